export {
  type AdminServer,
  type AdminServerOptions,
  type MetricsEndpoint,
  startAdminServer,
} from "./server.ts";

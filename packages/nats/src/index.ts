/**
 * @keel/nats: Keel nodes across processes and machines over NATS, visible to NATS tooling.
 * @module
 */
export {
  type DiscoveryOptions,
  type DiscoveryServer,
  SRV_PREFIX,
  type SrvEndpointInfo,
  type SrvEndpointStats,
  type SrvIdentity,
  type SrvInfoResponse,
  type SrvPingResponse,
  type SrvStatsResponse,
  type SrvVerb,
  serveDiscovery,
} from "./service-discovery.ts";
export {
  broadcastSubject,
  DEFAULT_CLUSTER,
  nodeSubject,
  subjectToken,
} from "./subjects.ts";
export {
  createNatsTransport,
  type NatsReconnectOptions,
  type NatsTlsOptions,
  type NatsTransport,
  type NatsTransportOptions,
  type NatsTransportStats,
  type NatsTransportStatus,
} from "./transport.ts";

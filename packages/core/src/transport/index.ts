export { checkFaults, drawLatency, type Latency, type LinkFaults } from "./faults.ts";
export {
  createInProcessNetwork,
  type InProcessNetwork,
  type InProcessNetworkOptions,
  type NetworkStats,
  type PartitionOptions,
} from "./in-process.ts";
export {
  FrameQueue,
  type FrameSink,
  type InboundFrame,
  type Transport,
  type TransportStatus,
} from "./transport.ts";

export { createRandom, hash32, type Seed } from "./random.ts";
export { createRealEnv, type RealEnvOptions, sleepOn } from "./real.ts";
export type { Clock, Env, Random, TimerHandle, Timers } from "./types.ts";
export { createVirtualEnv, type VirtualEnv, type VirtualEnvOptions } from "./virtual.ts";

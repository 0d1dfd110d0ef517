/**
 * @keel/cli: the `keel` command, also usable programmatically.
 * @module
 */
export { buildProgram, run } from "./program.ts";

#!/usr/bin/env node
/** The `keel` executable. */
import { run } from "./program.ts";

process.exitCode = await run(process.argv);
// A node's sockets and timers are closed by now; exit anyway so a stray handle cannot hang the shell.
process.exit();

#!/usr/bin/env node
// The `stoxnet` command line. The commands are in commands.ts, apart from
// this entry point so that tests can import them without running one.
import { main } from './commands.js';

process.exitCode = await main(process.argv.slice(2));

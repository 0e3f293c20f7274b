// The command line's option tables: every option a command accepts is in its
// --help, and every option its --help documents is accepted, taking a value
// exactly when the help shows an argument.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { commandHelp, commands, parserOptions } from '../ts/commands.js';
import { FLAGS } from '../ts/stox.js';
import { CLI } from './helpers/env.js';

const run = promisify(execFile);

/** The flags the entries of a `--help` document (`  --name ARG  text` or `  --name  text`), each with whether it takes a value. */
function documented(help: string): Record<string, boolean> {
  return Object.fromEntries([...help.matchAll(/^ {2}--([a-z0-9-]+)( \S+)? {2}/gm)].map((m) => [m[1], m[2] !== undefined]));
}

/** The flags the parser accepts, each with whether it takes a value. */
function accepted(name: string): Record<string, boolean> {
  return Object.fromEntries(Object.entries(parserOptions(commands[name])).map(([flag, o]) => [flag, o.type === 'string']));
}

const sorted = (o: Record<string, boolean>) => Object.fromEntries(Object.entries(o).sort(([a], [b]) => a.localeCompare(b)));

describe('CLI options and --help', () => {
  const names = Object.keys(commands);

  it('every command accepts exactly the options its --help documents', () => {
    for (const name of names) {
      const help = commandHelp(name, commands[name]);
      expect(Object.keys(accepted(name)).length, name).toBeGreaterThan(0);
      expect(sorted(documented(help)), `stoxnet ${name} --help vs its parser`).toEqual(sorted(accepted(name)));
    }
  });

  it('the usage line names only accepted options', () => {
    for (const name of names) {
      const flags = [...commands[name].usage.matchAll(/--([a-z0-9-]+)/g)].map((m) => m[1]);
      for (const flag of flags) expect(accepted(name), `stoxnet ${name} usage: --${flag}`).toHaveProperty([flag]);
    }
  });

  it('eval, train, cost and schedule take every simulator setting as a flag, and --config', () => {
    for (const name of ['eval', 'train', 'cost', 'schedule']) {
      for (const flag of [...Object.values(FLAGS), '--config']) expect(accepted(name), `stoxnet ${name} ${flag}`).toHaveProperty([flag.slice(2)], true);
    }
  });

  it('the built CLI prints that help and accepts every documented option', async () => {
    for (const name of names) {
      const { stdout } = await run(process.execPath, [CLI, name, '--help']);
      expect(stdout, `stoxnet ${name} --help`).toBe(commandHelp(name, commands[name]));
      // Every documented option, then one that is not: the parser (strict) stops at the
      // first option it rejects, before the command runs, so it must name the last.
      const args = Object.entries(documented(stdout)).map(([flag, takesValue]) => (takesValue ? `--${flag}=1` : `--${flag}`));
      const err = await run(process.execPath, [CLI, name, ...args, '--not-an-option']).then(
        () => undefined,
        (e: { code: number; stderr: string }) => e,
      );
      expect(err, `stoxnet ${name} ${args.join(' ')} --not-an-option`).toBeDefined();
      expect(err!.stderr).toContain(`Unknown option '--not-an-option'`);
      expect(err!.code).toBe(2);
    }
  });
});

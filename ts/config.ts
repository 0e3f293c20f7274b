// Validation at the boundary: every user-supplied option is checked once,
// here, and errors name the option and the value.
import { readFileSync } from 'node:fs';

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** The text of a user-given file; one that cannot be read is a ConfigError `what: reason`, `what` naming the file (e.g. `--grid FILE`). */
export function readTextFile(path: string, what: string = path): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    throw new ConfigError(`${what}: ${(e as Error).message}`, { cause: e });
  }
}

/** JSON text parsed; text that is not JSON is a ConfigError `what: not valid JSON (reason)`. */
export function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`${what}: not valid JSON (${(e as Error).message})`, { cause: e });
  }
}

/** A user-given JSON file, parsed; errors name it as `what` (default its path): `what: reason` or `what: not valid JSON (reason)`. */
export function readJsonFile(path: string, what: string = path): unknown {
  return parseJson(readTextFile(path, what), what);
}

/**
 * A value as error messages show it: JSON where that is faithful, so strings
 * keep their quotes, but numbers as JavaScript prints them (JSON would show
 * NaN and Infinity as null), and never an exception (BigInt, cycles). Cut
 * to a line.
 */
export function show(value: unknown): string {
  let s: string;
  if (typeof value === 'number') s = String(value);
  else if (typeof value === 'bigint') s = `${value}n`;
  else {
    try {
      s = JSON.stringify(value) ?? String(value);
    } catch {
      s = String(value);
    }
  }
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

export function int(name: string, value: unknown, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const v = typeof value === 'string' && value.trim() !== '' ? Number(value) : value;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new ConfigError(`${name}: expected an integer in [${min}, ${max}], got ${show(value)}`);
  }
  return v;
}

export function num(name: string, value: unknown, min: number, max: number): number {
  const v = typeof value === 'string' && value.trim() !== '' ? Number(value) : value;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) {
    throw new ConfigError(`${name}: expected a number in [${min}, ${max}], got ${show(value)}`);
  }
  return v;
}

/** A non-empty list of integers, given as an array or as "a,b,c" (a flag). */
export function ints(name: string, value: unknown, min: number, max = Number.MAX_SAFE_INTEGER): number[] {
  const raw = typeof value === 'string' ? value.split(',') : value;
  if (!Array.isArray(raw) || raw.length === 0) throw new ConfigError(`${name}: expected a list of integers, got ${show(value)}`);
  return raw.map((v, i) => int(`${name}[${i}]`, v, min, max));
}

export function oneOf<T extends string>(name: string, value: unknown, options: readonly T[]): T {
  if (typeof value !== 'string' || !options.includes(value as T)) {
    throw new ConfigError(`${name}: expected one of ${options.join(', ')}, got ${show(value)}`);
  }
  return value as T;
}

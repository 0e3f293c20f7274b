// Validation at the boundary: every user-supplied option is checked once,
// here, and errors name the option and the value.

export class ConfigError extends Error {
  override name = 'ConfigError';
}

export function int(name: string, value: unknown, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const v = typeof value === 'string' && value.trim() !== '' ? Number(value) : value;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new ConfigError(`${name}: expected an integer in [${min}, ${max}], got ${JSON.stringify(value)}`);
  }
  return v;
}

export function oneOf<T extends string>(name: string, value: unknown, options: readonly T[]): T {
  if (typeof value !== 'string' || !options.includes(value as T)) {
    throw new ConfigError(`${name}: expected one of ${options.join(', ')}, got ${JSON.stringify(value)}`);
  }
  return value as T;
}

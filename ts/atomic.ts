import { renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

/**
 * Writes `data` to a temporary file beside `path` and renames it into
 * place: readers see the old file or the new one, never a partial one, and
 * a failed write (disk full, no permission) leaves the old file intact.
 * Failures are an Error naming `path`, with the system error as `cause`.
 */
export function writeFileAtomic(path: string, data: string | Uint8Array): void {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  try {
    writeFileSync(tmp, data);
    renameSync(tmp, path);
  } catch (e) {
    try {
      rmSync(tmp, { force: true });
    } catch {
      // Best effort: when the directory is a file (ENOTDIR) there is no temporary file, and the write's error is the one to report.
    }
    throw new Error(`cannot write ${path}: ${(e as Error).message}`, { cause: e });
  }
}

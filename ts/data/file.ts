// Reads one file of a data set whose size the format fixes: a wrong file may
// be a large one, so its size is checked before it is read.
import { type FileHandle, open } from 'node:fs/promises';

/**
 * The bytes of `path`, which must hold exactly `bytes` (any size when
 * `bytes` is undefined); `title` names the data set and `fetch` the command
 * that downloads it, in the errors.
 */
export async function readDataFile(path: string, bytes: number | undefined, title: string, fetch: string): Promise<Buffer> {
  let file: FileHandle;
  try {
    file = await open(path, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new Error(`${title} file missing: ${path} (download it with \`${fetch}\`)`);
    }
    throw new Error(`cannot read ${title} file ${path}: ${(err as Error).message}`, { cause: err });
  }
  try {
    const st = await file.stat();
    if (!st.isFile()) throw new Error(`${title} file ${path} is not a regular file`);
    if (bytes !== undefined && st.size !== bytes) {
      const hint = st.size < bytes ? ' (truncated?)' : '';
      throw new Error(`${title} file ${path} has ${st.size} bytes, expected ${bytes}${hint}`);
    }
    const data = await file.readFile().catch((err: Error) => {
      throw new Error(`cannot read ${title} file ${path}: ${err.message}`, { cause: err });
    });
    // The file may change between stat and read.
    if (bytes !== undefined && data.length !== bytes) throw new Error(`${title} file ${path} has ${data.length} bytes, expected ${bytes}`);
    return data;
  } finally {
    await file.close();
  }
}

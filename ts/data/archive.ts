// The archive formats the data sets arrive in: tar (official archives, npm
// packages), ar (Debian packages, whose payload is an xz-compressed tar), xz
// and gzip.
import { promisify } from 'node:util';
import { gunzip as gunzipCb } from 'node:zlib';
import xzDecompress from 'xz-decompress';

export const gunzip = promisify(gunzipCb);

/** Decompresses an .xz stream (xz-decompress: the xz-embedded decoder in WebAssembly, no native addon). */
export async function unxz(data: Uint8Array): Promise<Uint8Array> {
  const stream = new xzDecompress.XzReadableStream(new Blob([data as Uint8Array<ArrayBuffer>]).stream());
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/**
 * Members of a Unix ar archive (the container of a .deb), by name: a
 * "!<arch>\n" signature, then per member a 60-byte header (name, dates, ids,
 * mode, decimal size, "`\n") and the data, padded to an even length.
 */
export function readAr(ar: Uint8Array, what = 'ar archive'): Map<string, Uint8Array> {
  const text = (at: number, len: number) => new TextDecoder('latin1').decode(ar.subarray(at, at + len));
  if (text(0, 8) !== '!<arch>\n') throw new Error(`${what}: not an ar archive (no !<arch> signature)`);
  const members = new Map<string, Uint8Array>();
  for (let at = 8; at < ar.length; ) {
    if (at + 60 > ar.length) throw new Error(`${what}: truncated member header at offset ${at}`);
    if (text(at + 58, 2) !== '`\n') throw new Error(`${what}: bad member header at offset ${at}`);
    const name = text(at, 16).trimEnd().replace(/\/$/, '');
    const size = Number(text(at + 48, 10).trim());
    if (!Number.isSafeInteger(size) || size < 0) throw new Error(`${what}: member ${name} has a bad size field`);
    const data = ar.subarray(at + 60, at + 60 + size);
    if (data.length < size) throw new Error(`${what}: member ${name} is truncated`);
    members.set(name, data);
    at += 60 + size + (size % 2);
  }
  return members;
}

/**
 * Regular files of an uncompressed tar archive (ustar, GNU or pax), by path.
 * Data are views into `tar`, not copies.
 */
export function readTar(tar: Uint8Array): Map<string, Uint8Array> {
  const files = new Map<string, Uint8Array>();
  const text = (at: number, len: number): string => {
    const field = tar.subarray(at, at + len);
    const end = field.indexOf(0);
    return new TextDecoder().decode(end < 0 ? field : field.subarray(0, end));
  };
  let nextPath: string | undefined; // from a GNU long-name or pax header, for the entry that follows
  let at = 0;
  while (at + 512 <= tar.length) {
    const header = tar.subarray(at, at + 512);
    if (header.every((b) => b === 0)) break; // end-of-archive marker
    let sum = 0;
    for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 0x20 : header[i];
    if (sum !== parseInt(text(at + 148, 8), 8)) throw new Error(`tar: bad header checksum at offset ${at}`);
    const size = parseInt(text(at + 124, 12), 8);
    if (!Number.isSafeInteger(size)) throw new Error(`tar: unsupported size field at offset ${at}`);
    const type = String.fromCharCode(header[156]);
    const prefix = text(at + 257, 6).startsWith('ustar') ? text(at + 345, 155) : '';
    const path = nextPath ?? (prefix ? `${prefix}/${text(at, 100)}` : text(at, 100));
    const data = tar.subarray(at + 512, at + 512 + size);
    if (data.length < size) throw new Error(`tar: ${path} is truncated`);
    at += 512 + Math.ceil(size / 512) * 512;
    if (type === 'L') {
      nextPath = new TextDecoder().decode(data).replace(/\0+$/, '');
    } else if (type === 'x') {
      nextPath = paxPath(data) ?? nextPath;
    } else if (type !== 'g') {
      if (type === '0' || type === '\0' || type === '7') files.set(path, data);
      nextPath = undefined;
    }
  }
  return files;
}

/** The `path` record of a pax extended header: records are "LEN key=value\n", LEN in bytes. */
function paxPath(data: Uint8Array): string | undefined {
  let path: string | undefined;
  for (let at = 0; at < data.length; ) {
    const space = data.indexOf(0x20, at);
    const len = parseInt(new TextDecoder().decode(data.subarray(at, space)), 10);
    if (space < 0 || !(len > 0)) break;
    const record = new TextDecoder().decode(data.subarray(space + 1, at + len - 1));
    if (record.startsWith('path=')) path = record.slice(5);
    at += len;
  }
  return path;
}

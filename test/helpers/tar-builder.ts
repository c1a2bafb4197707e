import { createHash } from "node:crypto";
import { gzipSync } from "node:zlib";
import { type Header, pack } from "tar-stream";

/**
 * Crafts tar archives for the unpacking tests: well-formed ones through tar-stream's packer, and the
 * hostile shapes a packer will not write (a header that lies about its size, a bad typeflag) from raw
 * 512-byte ustar headers.
 */

export interface TarEntry {
  name: string;
  /** Body of a regular file. */
  data?: string | Buffer;
  type?: Header["type"];
  linkname?: string;
  /** Permission bits as written in the archive (the stager must ignore them). */
  mode?: number;
  /** Pax records written in a header before the entry, e.g. { path: "../x" } to override the ustar name. */
  pax?: Record<string, string>;
}

export const BLOCK = 512;
/** Two zero blocks end an archive. */
export const END_OF_ARCHIVE = Buffer.alloc(2 * BLOCK);

/** A tar written by tar-stream's packer; names over 100 bytes get a pax header from it. */
export async function buildTar(entries: readonly TarEntry[]): Promise<Buffer> {
  const packer = pack();
  const chunks: Buffer[] = [];
  const collected = (async () => {
    for await (const chunk of packer) chunks.push(chunk as Buffer);
  })();
  for (const entry of entries) {
    const header: Parameters<typeof packer.entry>[0] = { name: entry.name, type: entry.type ?? "file" };
    if (entry.mode !== undefined) header.mode = entry.mode;
    if (entry.linkname !== undefined) header.linkname = entry.linkname;
    if (entry.pax !== undefined) header.pax = entry.pax;
    if (header.type === "file") {
      await new Promise<void>((resolve, reject) => {
        packer.entry(header, entry.data ?? "", (error) => (error ? reject(error) : resolve()));
      });
    } else {
      packer.entry(header);
    }
  }
  packer.finalize();
  await collected;
  return Buffer.concat(chunks);
}

export function gzip(archive: Buffer): Buffer {
  return gzipSync(archive);
}

/** A raw ustar header; `typeflag` is the character written at offset 156 ("0" file, "2" symlink, …). */
export function rawHeader(options: {
  name: string;
  size: number;
  typeflag?: string;
  mode?: number;
  linkname?: string;
}): Buffer {
  const header = Buffer.alloc(BLOCK);
  header.write(options.name, 0, 100, "utf8");
  writeOctal(header, options.mode ?? 0o644, 100, 8);
  writeOctal(header, 0, 108, 8);
  writeOctal(header, 0, 116, 8);
  writeOctal(header, options.size, 124, 12);
  writeOctal(header, 0, 136, 12);
  header.write(options.typeflag ?? "0", 156, 1, "latin1");
  if (options.linkname !== undefined) header.write(options.linkname, 157, 100, "utf8");
  header.write("ustar\u0000", 257, 6, "latin1");
  header.write("00", 263, 2, "latin1");
  // The checksum is summed with its own field read as eight spaces.
  header.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of header) sum += byte;
  header.write(`${sum.toString(8).padStart(6, "0")}\u0000 `, 148, 8, "latin1");
  return header;
}

/** A file entry from raw parts: header, data, padding to the next block. */
export function rawFile(name: string, data: Buffer, headerSize = data.length): Buffer {
  return Buffer.concat([rawHeader({ name, size: headerSize }), data, padding(data.length)]);
}

export function padding(size: number): Buffer {
  const rest = size % BLOCK;
  return Buffer.alloc(rest === 0 ? 0 : BLOCK - rest);
}

export function sha256(data: Buffer | string): string {
  return createHash("sha256").update(data).digest("hex");
}

function writeOctal(header: Buffer, value: number, offset: number, length: number): void {
  header.write(`${value.toString(8).padStart(length - 1, "0")}\u0000`, offset, length, "latin1");
}

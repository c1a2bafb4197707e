/** Spans found by the card-data detectors, and how they become `X`s (card-scrubber.ts). */

/** What one call found: chars to replace by `X`, and the spans (flat `[start, end)` pairs) to count. */
export interface Findings {
  mask: Uint8Array;
  spans: number[];
}

export function findingsFor(text: string, found: Findings | undefined): Findings {
  return found ?? { mask: new Uint8Array(text.length), spans: [] };
}

export function isDigitCode(c: number): boolean {
  return c >= 48 && c <= 57;
}

/** Masks every char of [start, end): used for tracks, where no part of the data may remain. */
export function maskAll(found: Findings, start: number, end: number): void {
  found.mask.fill(1, start, end);
  found.spans.push(start, end);
}

export function countSpans(spans: number[]): number {
  const pairs: [number, number][] = [];
  for (let i = 0; i < spans.length; i += 2) pairs.push([spans[i] ?? 0, spans[i + 1] ?? 0]);
  pairs.sort((x, y) => x[0] - y[0]);
  let count = 0;
  let reach = -1;
  for (const [start, end] of pairs) {
    if (start >= reach) count++;
    reach = Math.max(reach, end);
  }
  return count;
}

export function applyMask(text: string, found: Findings): string {
  const { mask } = found;
  let out = "";
  let copied = 0;
  let i = mask.indexOf(1);
  while (i >= 0) {
    let end = i;
    while (end < mask.length && mask[end] === 1) end++;
    out += text.slice(copied, i) + "X".repeat(end - i);
    copied = end;
    i = mask.indexOf(1, end);
  }
  return out + text.slice(copied);
}

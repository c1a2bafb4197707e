export interface BenchScrubberOptions {
  /** How much text to scrub, in 10^6 UTF-16 units (ASCII log lines: bytes). */
  megabytes: number;
}

export interface BenchScrubberResult {
  /** Throughput in 10^6 units per second, after a warm-up. */
  mbPerSec: number;
  /** Units scrubbed in the timed part (≥ megabytes × 10^6). */
  bytes: number;
  ms: number;
  /**
   * Redactions over the timed part: the card data (about 1 line in 200) plus the rule's accepted false
   * positives, mostly the epoch-ms stamps of the JSON lines (about a quarter of them).
   */
  redactions: number;
}

/**
 * Scrubs a fixed, seeded corpus of realistic log lines (mostly benign, some with card numbers, tracks
 * and EMV TLV dumps) with dist/shared/card-scrubber.js, line by line. Needs `npm run build` first.
 */
export declare function benchScrubber(options: BenchScrubberOptions): BenchScrubberResult;

// Throughput of the card-number scrubber (src/shared/card-scrubber.ts, built to dist/) over log lines
// shaped like what PIN pads, printers and the POS app write: mostly benign lines (timestamps, amounts,
// addresses, versions, hashes, epoch-ms stamps), about 1 in 200 carrying a card number, a track or an
// EMV TLV dump. Run `npm run build` first.
import { scrubCardData } from "../../dist/shared/card-scrubber.js";
import { prng } from "./prng.mjs";

const POOL_LINES = 20_000;
const WARMUP_BYTES = 2_000_000;

function withLuhnCheckDigit(body) {
  let sum = 0;
  for (let i = body.length - 1, double = true; i >= 0; i--, double = !double) {
    let d = body.charCodeAt(i) - 48;
    if (double) d = d * 2 > 9 ? d * 2 - 9 : d * 2;
    sum += d;
  }
  return body + String((10 - (sum % 10)) % 10);
}

function corpus(count) {
  const random = prng(0x5eed);
  const int = (max) => Math.floor(random() * max);
  const pick = (items) => items[int(items.length)];
  const pad = (value, width) => String(value).padStart(width, "0");
  const hex = (bytes) => Array.from({ length: bytes }, () => pad(int(256).toString(16), 2)).join("");
  const iso = () =>
    `2026-${pad(1 + int(12), 2)}-${pad(1 + int(28), 2)}T${pad(int(24), 2)}:${pad(int(60), 2)}:${pad(int(60), 2)}.${pad(int(1000), 3)}Z`;
  const level = () => pick(["INFO ", "DEBUG", "WARN ", "ERROR"]);
  const card = () =>
    withLuhnCheckDigit(pick(["411111", "555555", "222100", "378282", "601100"]) + pad(int(1e9), 9));
  const benign = [
    () =>
      `${iso()} ${level()} emv: transaction ${int(100000)} started amount=${int(1000)}.${pad(int(100), 2)} EUR`,
    () => `${iso()} ${level()} printer: status byte 0x${hex(1)} paper ok, cutter ok, head ${30 + int(40)}C`,
    () =>
      `${iso()} ${level()} net: dhcp lease 192.168.${int(256)}.${int(256)}/24 gw 192.168.1.1 mac 00:1A:2B:${hex(1)}:${hex(1)}:${hex(1)}`,
    () =>
      `${iso()} ${level()} ota: firmware 4.${int(20)}.${int(10)}.${int(9999)} sha256=${hex(32)} verified in ${int(5000)} ms`,
    () =>
      `{"level":30,"time":${1767225600000 + int(31_536_000_000)},"pid":${int(32768)},"msg":"heartbeat ok","seq":${int(1e6)}}`,
    () => `I/PinPad  (${int(32768)}): key event ${int(20)} after ${int(10000)} ms, battery ${int(100)}%`,
    () =>
      `${iso()} ${level()} pos: basket ${int(100)} items total 1,${pad(int(1000), 3)}.${pad(int(100), 2)} receipt ${pad(int(1e8), 8)}`,
    () =>
      `${iso()} ${level()} usb: device 0x${hex(2)}:0x${hex(2)} attached bus ${int(4)} port ${int(8)} serial PX${pad(int(1e8), 8)}`,
  ];
  const sensitive = [
    () => `${iso()} DEBUG reader: pan=${card()}`,
    () => `${iso()} DEBUG reader: track2=;${card()}=2812101${pad(int(1e9), 9)}?`,
    () => `${iso()} DEBUG kernel: 5A08${card()} 5F2008${Buffer.from("DOE/JOHN").toString("hex")}`,
  ];
  return Array.from({ length: count }, () => (random() < 0.005 ? pick(sensitive) : pick(benign))());
}

/**
 * Scrubs the corpus line by line until `megabytes` (10^6 UTF-16 units, ASCII here) have been scrubbed.
 * @param {{ megabytes: number }} options
 * @returns {{ mbPerSec: number, bytes: number, ms: number, redactions: number }}
 */
export function benchScrubber({ megabytes }) {
  const lines = corpus(POOL_LINES);
  const target = megabytes * 1e6;
  let sink = 0;
  for (let bytes = 0, i = 0; bytes < WARMUP_BYTES; i = (i + 1) % lines.length) {
    const line = lines[i];
    sink += scrubCardData(line).text.length;
    bytes += line.length;
  }
  let bytes = 0;
  let redactions = 0;
  const t0 = performance.now();
  for (let i = 0; bytes < target; i = (i + 1) % lines.length) {
    const line = lines[i];
    const result = scrubCardData(line);
    sink += result.text.length;
    redactions += result.redactions;
    bytes += line.length;
  }
  const ms = performance.now() - t0;
  if (sink < 0) throw new Error("unreachable: keeps the scrub results alive");
  return { mbPerSec: bytes / 1e6 / (ms / 1000), bytes, ms, redactions };
}

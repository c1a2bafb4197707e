import type { StoredRecord, Stream } from "../store/outbox.js";

export interface Batch {
  stream: Stream;
  fromSeq: number;
  toSeq: number;
  count: number;
  payload: string;
}

/** Room in one message for the batch header and a record's seq, ts and historical flag. */
const BATCH_HEADER_RESERVE = 512;

/** The largest record body (JSON bytes) that still fits in one message on its own. */
export function maxRecordBytes(maxMessageBytes: number): number {
  return maxMessageBytes - BATCH_HEADER_RESERVE;
}

export interface BatchHeader {
  deviceId: string;
  sessionId: number;
}

/** `{"seq":…,"ts":…,…fields}` built as text: the body is stored as JSON already, so no re-parse. */
export function recordJson(record: StoredRecord, historical: boolean): string {
  const head = `{"seq":${record.seq},"ts":${record.ts}${historical ? ',"historical":true' : ""}`;
  return record.body === "{}" ? `${head}}` : `${head},${record.body.slice(1)}`;
}

/**
 * Splits a page of records (seq order, streams interleaved) into one message per run of a stream,
 * each at most `maxBytes` of payload. Every batch covers all of its stream's rows between fromSeq and
 * toSeq in the page, so deleting that range after PUBACK deletes exactly what was sent.
 */
export function buildBatches(
  records: readonly StoredRecord[],
  header: BatchHeader,
  maxBytes: number,
  historicalUpTo: number,
): Batch[] {
  const prefix = `{"v":1,"deviceId":${JSON.stringify(header.deviceId)},"sessionId":${header.sessionId},"records":[`;
  const suffix = "]}";
  const overhead = Buffer.byteLength(prefix) + suffix.length;
  const open = new Map<Stream, { parts: string[]; bytes: number; fromSeq: number; toSeq: number }>();
  const done: Batch[] = [];

  const close = (stream: Stream) => {
    const batch = open.get(stream);
    if (batch === undefined) return;
    open.delete(stream);
    done.push({
      stream,
      fromSeq: batch.fromSeq,
      toSeq: batch.toSeq,
      count: batch.parts.length,
      payload: prefix + batch.parts.join(",") + suffix,
    });
  };

  for (const record of records) {
    const json = recordJson(record, record.seq <= historicalUpTo);
    const size = Buffer.byteLength(json);
    let batch = open.get(record.stream);
    if (batch !== undefined && batch.bytes + 1 + size > maxBytes) {
      close(record.stream);
      batch = undefined;
    }
    if (batch === undefined) {
      open.set(record.stream, {
        parts: [json],
        bytes: overhead + size,
        fromSeq: record.seq,
        toSeq: record.seq,
      });
    } else {
      batch.parts.push(json);
      batch.bytes += 1 + size;
      batch.toSeq = record.seq;
    }
  }
  for (const stream of [...open.keys()]) close(stream);
  return done.sort((a, b) => a.fromSeq - b.fromSeq);
}

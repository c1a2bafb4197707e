/**
 * A copy of a config fit to leave the terminal (logs.upload): values of keys that name secrets or
 * where to find them are replaced, and user information and query strings are cut from URLs (a
 * presigned query or `user:password@` is a credential). The password itself lives in a file the
 * config only names, and is never read here.
 */
export const REDACTED = "[redacted]";

const SECRET_KEY = /pass(word)?|secret|token|credential|private|^key$|apikey|api_key|username/i;

export function redactConfig(value: unknown): unknown {
  return redact(value, undefined);
}

function redact(value: unknown, key: string | undefined): unknown {
  if (key !== undefined && SECRET_KEY.test(key) && value !== undefined && value !== null) return REDACTED;
  if (Array.isArray(value)) return value.map((item) => redact(item, undefined));
  if (typeof value === "object" && value !== null) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, redact(v, k)]));
  }
  if (typeof value === "string") return redactUrl(value);
  return value;
}

/** `mqtts://user:pw@host:8883/x?sig=…` → `mqtts://[redacted]@host:8883/x?[redacted]`; other strings as they are. */
export function redactUrl(text: string): string {
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(text)) return text;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return text;
  }
  const userinfo = url.username !== "" || url.password !== "";
  const query = url.search !== "";
  if (!userinfo && !query) return text;
  const scheme = text.slice(0, text.indexOf("://") + 3);
  const rest = text.slice(scheme.length);
  const at = userinfo ? rest.indexOf("@") + 1 : 0;
  const hostAndPath = rest.slice(at).split(/[?#]/, 1)[0] ?? "";
  return `${scheme}${userinfo ? `${REDACTED}@` : ""}${hostAndPath}${query ? `?${REDACTED}` : ""}`;
}

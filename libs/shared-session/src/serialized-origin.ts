/**
 * The serialized origin of an `Origin` header or of `<scheme>://<host>`, as a
 * browser writes it (lower-case host, default port left out); undefined for
 * `null` and anything else that is not an http(s) origin.
 */
export function serializedOrigin(value: string): string | undefined {
  try {
    const url = new URL(value);
    return url.protocol === 'http:' || url.protocol === 'https:' ? url.origin : undefined;
  } catch {
    return undefined;
  }
}

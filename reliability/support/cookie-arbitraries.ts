import fc from 'fast-check';

/** PROTOCOL.md section 1: what a reader accepts as a session id. */
export const SID_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-';

/** Every session id a reader accepts: 16 to 128 characters of [A-Za-z0-9_-]. */
export const validSid = (): fc.Arbitrary<string> =>
  fc.oneof(
    fc.string({ unit: fc.constantFrom(...SID_ALPHABET), minLength: 16, maxLength: 128 }),
    fc.uuid().map((u) => u.toLowerCase()), // what writers issue
    fc.constantFrom(16, 17, 127, 128).chain((n) => fc.string({ unit: fc.constantFrom(...SID_ALPHABET), minLength: n, maxLength: n })),
  );

/** Characters that separate things in cookies, or look like they could. */
export const SEPARATORS = [',', ';', ':', '|', '!', '~', ' ', '\t', '=', '/', '\\', '+', '*', '..', '%2E', '%2e', '', '_', '-', '\u3002', '\uff0e', '\u2024', '$', '#', '@', '&', '"', "'"];

/** One byte (as a latin1 character) other than CR and LF, which would end the header line. */
export const headerByte = (): fc.Arbitrary<string> =>
  fc.integer({ min: 0, max: 255 }).filter((b) => b !== 13 && b !== 10).map((b) => String.fromCharCode(b));

/** A character for mutations: ASCII, latin1 (non-UTF-8 bytes on the wire), or any unicode. */
const anyChar = (bytesOnly: boolean): fc.Arbitrary<string> =>
  bytesOnly ? headerByte() : fc.oneof(fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }), headerByte());

export type Mutation = { kind: string; value: string };

/**
 * A mutation of a valid cookie value that always changes it: the result is
 * never the original. `bytesOnly` keeps every character in 0x00-0xFF minus
 * CR/LF, so that `Buffer.from(value, 'latin1')` sends it as is.
 */
export function mutatedCookie(valid: string, options: { bytesOnly?: boolean } = {}): fc.Arbitrary<Mutation> {
  const bytesOnly = options.bytesOnly ?? false;
  const pos = fc.integer({ min: 0, max: valid.length - 1 });
  const char = anyChar(bytesOnly);
  const arbs: fc.Arbitrary<Mutation>[] = [
    // one or more characters replaced by a different one
    fc.array(fc.tuple(pos, char), { minLength: 1, maxLength: 4 }).map((flips) => {
      const chars = [...valid];
      for (const [i, c] of flips) chars[i] = c === valid[i] ? String.fromCharCode((c.charCodeAt(0) + 1) % 256 || 1) : c;
      return { kind: 'flip', value: chars.join('') };
    }),
    // a single bit flipped in one byte
    fc.tuple(pos, fc.integer({ min: 0, max: 7 })).map(([i, bit]) => {
      const flipped = String.fromCharCode(valid.charCodeAt(i) ^ (1 << bit));
      return { kind: 'bitflip', value: valid.slice(0, i) + flipped + valid.slice(i + 1) };
    }),
    // truncated (possibly to nothing)
    fc.integer({ min: 0, max: valid.length - 1 }).map((n) => ({ kind: 'truncate', value: valid.slice(0, n) })),
    // cut from the front
    fc.integer({ min: 1, max: valid.length }).map((n) => ({ kind: 'truncate-front', value: valid.slice(n) })),
    // extended: the first added character is never whitespace or ';' (which would end or pad the value)
    fc
      .tuple(char.filter((c) => !/[\s;\u00a0\ufeff]/.test(c) && c !== '\0'), fc.array(char, { maxLength: 40 }))
      .map(([first, rest]) => ({ kind: 'extend', value: valid + first + rest.join('') })),
    // something inserted inside
    fc.tuple(fc.integer({ min: 1, max: valid.length - 1 }), fc.array(char, { minLength: 1, maxLength: 8 })).map(([i, ins]) => ({
      kind: 'insert',
      value: valid.slice(0, i) + ins.join('') + valid.slice(i),
    })),
    // one character removed
    pos.map((i) => ({ kind: 'delete', value: valid.slice(0, i) + valid.slice(i + 1) })),
    // the '.' replaced by another separator, or doubled
    fc.constantFrom(...SEPARATORS.filter((s) => !bytesOnly || [...s].every((c) => c.charCodeAt(0) < 256))).map((sep) => ({
      kind: 'separator',
      value: valid.replace('.', sep === '' ? '' : sep === '.' ? '..' : sep),
    })),
    // the signature and the session id swapped around the dot
    fc.constant(null).map(() => {
      const [sid, sig] = valid.split('.');
      return { kind: 'swap', value: `${sig}.${sid}` };
    }),
    // the case of one or more letters changed
    fc.array(pos, { minLength: 1, maxLength: 6 }).map((positions) => {
      const chars = [...valid];
      for (const i of positions) {
        const c = chars[i];
        chars[i] = c === c.toUpperCase() ? c.toLowerCase() : c.toUpperCase();
      }
      return { kind: 'case', value: chars.join('') };
    }),
    // standard or padded base64 for the signature (Python accepts these; the protocol does not)
    fc.constantFrom('=', '==', '+', '/').map((pad) => ({ kind: 'padding', value: pad.length > 1 || pad === '=' ? valid + pad : valid.replace(/[-_]/, pad) })),
    // the whole value doubled, with or without a separator
    fc.constantFrom('', '.', ',', '|').map((sep) => ({ kind: 'repeat', value: valid + sep + valid })),
  ];
  return fc.oneof(...arbs).filter((m) => m.value !== valid && (!bytesOnly || !/[\r\n]/.test(m.value)));
}

/** Random strings of every kind: unicode, binary-ish, huge. */
export function hostileString(): fc.Arbitrary<string> {
  return fc.oneof(
    { weight: 4, arbitrary: fc.string({ maxLength: 300 }) },
    { weight: 3, arbitrary: fc.string({ unit: 'binary', maxLength: 300 }) },
    { weight: 3, arbitrary: fc.string({ unit: 'grapheme', maxLength: 100 }) },
    { weight: 3, arbitrary: fc.string({ unit: fc.constantFrom(...SID_ALPHABET, '.', '=', ';', ' ', ','), maxLength: 200 }) },
    { weight: 2, arbitrary: fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b).toString('latin1')) },
    { weight: 2, arbitrary: fc.tuple(fc.string({ unit: fc.constantFrom(...SID_ALPHABET), minLength: 0, maxLength: 140 }), fc.string({ unit: fc.constantFrom(...SID_ALPHABET), minLength: 0, maxLength: 40 })).map(([a, b]) => `${a}.${b}`) },
    { weight: 1, arbitrary: fc.integer({ min: 257, max: 70_000 }).map((n) => 'a'.repeat(n - 28) + '.' + 'b'.repeat(27)) },
    { weight: 1, arbitrary: fc.integer({ min: 1_000, max: 100_000 }).chain((n) => fc.constantFrom('\0', '\uffff', '\ud800', '.', '💩').map((c) => c.repeat(n))) },
  );
}

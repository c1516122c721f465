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
export const SEPARATORS = [
  ',',
  ';',
  ':',
  '|',
  '!',
  '~',
  ' ',
  '\t',
  '=',
  '/',
  '\\',
  '+',
  '*',
  '..',
  '%2E',
  '%2e',
  '',
  '_',
  '-',
  '\u3002',
  '\uff0e',
  '\u2024',
  '$',
  '#',
  '@',
  '&',
  '"',
  "'",
];

/** One byte (as a latin1 character) other than CR and LF, which would end the header line. */
export const headerByte = (): fc.Arbitrary<string> =>
  fc
    .integer({ min: 0, max: 255 })
    .filter((b) => b !== 13 && b !== 10)
    .map((b) => String.fromCharCode(b));

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
      .tuple(
        char.filter((c) => !/[\s;\u00a0\ufeff]/.test(c) && c !== '\0'),
        fc.array(char, { maxLength: 40 }),
      )
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
    fc
      .constantFrom('=', '==', '+', '/')
      .map((pad) => ({ kind: 'padding', value: pad.length > 1 || pad === '=' ? valid + pad : valid.replace(/[-_]/, pad) })),
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
    {
      weight: 2,
      arbitrary: fc
        .tuple(
          fc.string({ unit: fc.constantFrom(...SID_ALPHABET), minLength: 0, maxLength: 140 }),
          fc.string({ unit: fc.constantFrom(...SID_ALPHABET), minLength: 0, maxLength: 40 }),
        )
        .map(([a, b]) => `${a}.${b}`),
    },
    { weight: 1, arbitrary: fc.integer({ min: 257, max: 70_000 }).map((n) => 'a'.repeat(n - 28) + '.' + 'b'.repeat(27)) },
    {
      weight: 1,
      arbitrary: fc
        .integer({ min: 1_000, max: 100_000 })
        .chain((n) => fc.constantFrom('\0', '\uffff', '\ud800', '.', '💩').map((c) => c.repeat(n))),
    },
  );
}

/** Whitespace around names and values: none most often, else SP and HTAB (which PROTOCOL.md section 10 trims). */
const ows = (): fc.Arbitrary<string> =>
  fc.oneof({ weight: 6, arbitrary: fc.constant('') }, { weight: 3, arbitrary: fc.constantFrom(' ', '\t', ' \t', '  ', '\t ') });

/**
 * Around names and values now and then: bytes 0x80-0xFF, among them the
 * latin1 whitespace that PROTOCOL.md section 10 does not trim but
 * JavaScript's trim() does (U+00A0), and U+0085 (NEL).
 */
const edge = (): fc.Arbitrary<string> =>
  fc.oneof(
    { weight: 30, arbitrary: ows() },
    { weight: 1, arbitrary: fc.constantFrom('\u00a0', '\u0085', '\u00a0 ', ' \u00a0', '\t\u00a0', '\u0080', '\u00ff', '\u00e9') },
    { weight: 1, arbitrary: fc.integer({ min: 0x80, max: 0xff }).map((b) => String.fromCharCode(b)) },
  );

/** Control bytes HTTP forbids in a field value (NUL too: nginx and Node answer 400 to it). */
const CONTROL_BYTES = ['\u0001', '\u0008', '\u000b', '\u000c', '\u001f', '\u007f', '\u0000'];

/** Values of other cookies: plain, or with what readers disagree on (commas, quotes, '=', whitespace, latin1 bytes). */
const otherValue = (name: string): fc.Arbitrary<string> =>
  fc.oneof(
    { weight: 4, arbitrary: fc.stringMatching(/^[A-Za-z0-9._-]{0,16}$/) },
    {
      weight: 2,
      arbitrary: fc.constantFrom(
        '1,2',
        '"quoted"',
        '"a;b"',
        '"a,b"',
        'a=b',
        'a b',
        '\u00e9\u00ff',
        '\\"',
        `x,${name}`,
        `x,${name}x=1`,
        `"x;${name}=`,
      ),
    },
    {
      weight: 2,
      arbitrary: fc.string({ unit: fc.constantFrom('a', '1', ',', '"', '=', ' ', '\t', '\u00a0', '\u0080', '\\', '%'), maxLength: 12 }),
    },
  );

/**
 * One `;`-separated piece of a Cookie header, built around the cookie `name`
 * and the given values: ours (the name or a near miss of it, whitespace
 * around, the value bare, quoted, empty or extended), another cookie, a bare
 * word, ours behind a comma, or a control byte.
 */
function cookiePiece(name: string, values: fc.Arbitrary<string>): fc.Arbitrary<string> {
  const ourName = fc.oneof(
    { weight: 10, arbitrary: fc.constant(name) },
    {
      weight: 2,
      arbitrary: fc.constantFrom(
        name.toUpperCase(),
        name[0].toUpperCase() + name.slice(1),
        `${name}x`,
        `x${name}`,
        name.slice(0, -1),
        `${name}\u00a0`,
      ),
    },
  );
  const ourValue = fc.oneof(
    { weight: 10, arbitrary: values },
    { weight: 1, arbitrary: values.map((v) => `"${v}"`) },
    { weight: 1, arbitrary: fc.tuple(values, fc.constantFrom(',x=1', ' x', '=', ',')).map(([v, tail]) => v + tail) },
    { weight: 1, arbitrary: fc.constant('') },
  );
  const ours = fc.tuple(edge(), ourName, ows(), ows(), ourValue, edge()).map(([a, n, b, c, v, d]) => `${a}${n}${b}=${c}${v}${d}`);
  const otherName = fc.oneof(fc.stringMatching(/^[a-z_]{1,8}$/), fc.constantFrom('', '$Version', 'x,y', '"q"', `${name}-x`));
  const other = fc.tuple(edge(), otherName, otherValue(name), edge()).map(([a, n, v, b]) => `${a}${n}=${v}${b}`);
  const behindComma = fc
    .tuple(otherName, otherValue(name), ows(), ows(), values)
    .map(([n, v, a, b, ours]) => `${n}=${v},${a}${name}${b}=${ours}`);
  const control = fc.tuple(other, fc.constantFrom(...CONTROL_BYTES), fc.nat()).map(([p, c, i]) => {
    const at = i % (p.length + 1);
    return p.slice(0, at) + c + p.slice(at);
  });
  return fc.oneof(
    { weight: 10, arbitrary: ours },
    { weight: 20, arbitrary: other },
    { weight: 2, arbitrary: fc.constantFrom('', ' ', name, 'a') },
    { weight: 1, arbitrary: behindComma },
    { weight: 1, arbitrary: control },
  );
}

/** Between pieces: what browsers send most often, else the other spellings of ';', and commas. */
const pieceSeparator = (): fc.Arbitrary<string> =>
  fc.oneof(
    { weight: 8, arbitrary: fc.constant('; ') },
    { weight: 4, arbitrary: fc.constantFrom(';', ' ;', ';\t', ';;', ' ; ') },
    { weight: 1, arbitrary: fc.constantFrom(',', ', ') },
  );

/** Stands for the header's own value in the pieces: never a latin1 character, so never in a header. */
const HEADER_VALUE = '\uffff';

/**
 * The lines of a Cookie header (one to three, as HTTP/2 clients split them)
 * made of pieces around the cookie `name` and `values`: every edge case of
 * PROTOCOL.md section 10 (whitespace and tabs, commas, quotes, duplicates,
 * other cases of the name, control bytes, several lines, and headers on both
 * sides of the 8000-byte cap). Latin1 strings, never CR or LF.
 */
export function cookieHeaderLines(name: string, values: fc.Arbitrary<string>): fc.Arbitrary<string[]> {
  // Mostly one value per header, so that duplicates are often the same cookie (as a browser sends it twice), sometimes not.
  const pieceValue = fc.oneof({ weight: 4, arbitrary: fc.constant(HEADER_VALUE) }, { weight: 1, arbitrary: values });
  const line = fc
    .tuple(fc.array(fc.tuple(cookiePiece(name, pieceValue), pieceSeparator()), { minLength: 1, maxLength: 5 }), fc.boolean())
    .map(([pieces, trailing]) => pieces.map(([p, sep], i) => (i < pieces.length - 1 || trailing ? p + sep : p)).join(''));
  // A large other cookie, so that some headers are just under and some just over the cap.
  // Whitespace at its ends, which the HTTP layers keep or strip differently, does not count toward the cap.
  const padding = fc.tuple(ows(), fc.integer({ min: 7_600, max: 8_000 }), ows()).map(([a, n, b]) => `${a}pad=${'p'.repeat(n)}${b}`);
  const lines = fc.oneof(
    { weight: 12, arbitrary: fc.array(line, { minLength: 1, maxLength: 3 }) },
    { weight: 1, arbitrary: fc.tuple(line, padding, fc.boolean()).map(([l, pad, first]) => (first ? [pad, l] : [l, pad])) },
  );
  return fc.tuple(values, lines).map(([value, ls]) => ls.map((l) => l.split(HEADER_VALUE).join(value)));
}

/**
 * The protocol test kit: PROTOCOL.md as code for the tests, independent of
 * both implementations. The vectors, a reference signer checked against them,
 * the key layout and channel names, and sessions written and read as the
 * protocol says. Tests of the Lua rock, of the Nest library, end to end and
 * of reliability all take their oracle from here.
 */
export * from './vectors';
export * from './signer';
export * from './layout';
export * from './session';
export * from './cookie-grammar';
export * from './session-id';
export * from './control';
export * from './compact';

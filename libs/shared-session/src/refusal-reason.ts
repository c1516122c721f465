/** PROTOCOL.md section 16.3's refusal reasons: the same words as nginx's, for events, metrics and refusal pages. */
export type SharedSessionRefusalReason = 'no_session' | 'two_sessions' | 'session_ended' | 'not_member' | 'unavailable';

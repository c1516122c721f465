import { createHash, timingSafeEqual } from 'node:crypto';

/** The fixture users of the seed's test app: email, password, groups. */
export const FIXTURE_USERS: ReadonlyArray<{ email: string; password: string; groups: string[] }> = [
  { email: 'joe@example.com', password: 'itsjoe', groups: ['one', 'three'] },
  { email: 'sam@example.com', password: 'itssam', groups: ['two'] },
  { email: 'esteban@example.com', password: 'itsesteban', groups: ['one', 'four'] },
  { email: 'maria@example.com', password: 'itsmaria', groups: [] },
  // The administrator of the demo's admin page (/app/admin).
  { email: 'admin@example.com', password: 'itsadmin', groups: ['admins'] },
];

const digest = (s: string) => createHash('sha256').update(s).digest();

/** The user's groups when the password is right, else null (compared in constant time). */
export function checkPassword(email: unknown, password: unknown): { email: string; groups: string[] } | null {
  if (typeof email !== 'string' || typeof password !== 'string') return null;
  const user = FIXTURE_USERS.find((u) => u.email === email.trim().toLowerCase());
  const ok = timingSafeEqual(digest(user?.password ?? '\0no such user'), digest(password));
  return user && ok ? { email: user.email, groups: [...user.groups] } : null;
}

/** The groups a fixture user may hold. */
export function groupsOf(email: string): string[] {
  return [...(FIXTURE_USERS.find((u) => u.email === email)?.groups ?? [])];
}

import { SetMetadata } from '@nestjs/common';
import { GROUPS_METADATA } from './shared-session.constants';

/** A group named in code, or one taken from a route parameter (`/groups/:groupId/report`). */
export type GroupRequirement = string | { param: string };

/**
 * The session must be a member of at least one of these groups. On a class
 * or a method; the method's wins. Enforced by GroupGuard.
 *
 * @example @Groups('admins', 'auditors')
 * @example @Groups({ param: 'groupId' })
 */
export function Groups(...groups: GroupRequirement[]): MethodDecorator & ClassDecorator {
  if (groups.length === 0) throw new TypeError('@Groups() needs at least one group or { param }');
  for (const group of groups) {
    const ok = typeof group === 'string' ? group.length > 0 : !!group && typeof group.param === 'string' && group.param.length > 0;
    if (!ok) throw new TypeError('@Groups(): each argument is a non-empty group id or { param: "<route parameter>" }');
  }
  return SetMetadata(GROUPS_METADATA, groups);
}

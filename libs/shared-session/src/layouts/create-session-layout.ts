import { ClusterLayout } from './cluster';
import { CompactLayout } from './compact';
import type { KeyLayout, LayoutContext, SessionLayout } from './session-layout';
import { V1Layout } from './v1';

const LAYOUTS: Record<KeyLayout, new (ctx: LayoutContext) => SessionLayout> = {
  v1: V1Layout,
  cluster: ClusterLayout,
  compact: CompactLayout,
};

/** The layout of that name, on that client: chosen once, where the store, the control or the migration is made. */
export function createSessionLayout(name: KeyLayout, ctx: LayoutContext): SessionLayout {
  return new LAYOUTS[name](ctx);
}

/** True for a layout's name. */
export function isKeyLayout(name: unknown): name is KeyLayout {
  return typeof name === 'string' && Object.prototype.hasOwnProperty.call(LAYOUTS, name);
}

/**
 * What a layout cannot be used with, as the options and the CLI check it:
 * the v1 layout's three keys of a session are in three slots of a Redis
 * Cluster; the other layouts make the session id the hash tag, so the
 * prefix may hold no `{` `}`. Undefined when it can.
 */
export function layoutOptionProblem(
  name: KeyLayout,
  use: { cluster: boolean; prefix: string },
): { option: 'layout' | 'prefix'; reason: string } | undefined {
  if (name === 'v1') {
    return use.cluster ? { option: 'layout', reason: 'the v1 keys of a session are in three slots' } : undefined;
  }
  return /[{}]/.test(use.prefix) ? { option: 'prefix', reason: 'the session id is the hash tag' } : undefined;
}

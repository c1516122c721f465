import { Inject } from '@nestjs/common';
import { SHARED_SESSION_REDIS } from './shared-session.constants';

/**
 * Injects the ioredis client the module uses: the one you passed as `redis`,
 * or the one it created (and closes at shutdown).
 *
 * @example constructor(@InjectSharedSessionRedis() private readonly redis: Redis) {}
 */
export const InjectSharedSessionRedis = () => Inject(SHARED_SESSION_REDIS);

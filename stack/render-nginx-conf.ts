// Renders resty/conf/nginx.conf.template for OpenResty (docker-compose) from
// the environment, to standard output.
import { renderNginxConf, sessionValuesFromEnv } from './nginx-conf';

const env = process.env;
const redis = new URL(env.REDIS_URL || 'redis://redis:6379');
process.stdout.write(
  renderNginxConf({
    PLATFORM: '',
    WORKERS: env.NGINX_WORKERS || 'auto',
    RUN_DIR: env.NGINX_RUN_DIR || '/var/run/resty',
    ERROR_LOG: '/dev/stderr warn',
    ACCESS_LOG: '/dev/stdout',
    LUA_PACKAGE_PATH: env.LUA_PACKAGE_PATH || '/opt/resty-shared-session/lib/?.lua;;',
    NGINX_LISTEN: env.NGINX_LISTEN || '8089',
    APP_UPSTREAM: env.APP_UPSTREAM || 'demo:5017',
    REDIS_HOST: redis.hostname,
    REDIS_PORT: redis.port || '6379',
    REDIS_DB: redis.pathname.replace('/', '') || '0',
    ...sessionValuesFromEnv(env),
  }),
);

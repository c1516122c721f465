/**
 * PROTOCOL.md section 16.1 inside a real nginx worker: the rock's
 * resty.shared_session.log computes each event id of protocol/events.json
 * with nginx's own libcrypto (the id the rock's audit log will carry, the
 * same as the application's events).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { NginxServer } from '../../stack/nginx-server';
import { postJson } from '../../stack/http-client';
import { nginxConf, stopRedisAndNginx } from './support';

interface EventIdVector {
  secret: string;
  session_id: string;
  event_id: string;
}

const vectors = (JSON.parse(readFileSync(join(__dirname, '../../protocol/events.json'), 'utf8')) as { vectors: EventIdVector[] }).vectors;

let nginx: NginxServer;

beforeAll(async () => {
  nginx = await NginxServer.start({
    conf: nginxConf({
      configure: null,
      locations: `
    location = /event-id {
      content_by_lua_block {
        local cjson = require "cjson.safe"
        local log = require "resty.shared_session.log"
        ngx.req.read_body()
        local v = assert(cjson.decode(ngx.req.get_body_data()))
        local key = assert(log.event_id_key(v.secret))
        ngx.say(cjson.encode({ event_id = log.event_id(key, v.session_id) }))
      }
    }
`,
    }),
  });
});

afterAll(() =>
  stopRedisAndNginx({ nginx }, (log) => {
    expect(log).not.toMatch(/\[error\]|signal/);
  }),
);

test.each(vectors.map((v) => [v.session_id, v] as const))('events.json: %s under its secret', async (_sid, v) => {
  expect(await postJson<{ event_id: string }>(nginx.port, '/event-id', { secret: v.secret, session_id: v.session_id })).toEqual({
    event_id: v.event_id,
  });
});

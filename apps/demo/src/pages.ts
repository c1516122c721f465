import type { LoginBan, OwnSession, UserSession } from 'nest-resty-shared-session';
import type { StatusFigure, StatusFigures, StatusUnavailable } from './status-panel';
/** The demo's few HTML pages: plain, no template engine. */
const escape = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

export function page(title: string, body: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escape(title)}</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem}
code{background:#f2f2f2;padding:0 .2em}.refused{color:#a00}</style></head>
<body><h1>${escape(title)}</h1>${body}</body></html>`;
}

/**
 * What the demo says to a request that sent two different session cookies
 * (cookie tossing): nginx's refusal page says the same (resty/conf/nginx.conf.template).
 */
export const TWO_SESSIONS_SENT =
  'Your browser sent two different session cookies (another site on a parent domain may have set one), so neither counts. ' +
  "Log out, or clear this site's cookies, then log in again.";

export function homePage(email: string | undefined, groups: readonly string[] = [], twoSessions = false): string {
  const status = email
    ? `Logged in as '${escape(email)}'`
    : twoSessions
      ? `<span class="refused" id="two-sessions">${escape(TWO_SESSIONS_SENT)}</span>`
      : 'You are not logged in!';
  const member = email
    ? `<p id="groups">${groups.length ? `Your groups: ${groups.map((g) => `<code>${escape(g)}</code>`).join(', ')}` : 'You are in no group.'}</p>`
    : '';
  const actions =
    email || twoSessions
      ? `${email ? '<p><a href="/app/sessions" id="your-sessions">Your sessions</a></p>' : ''}<form method="post" action="/app/logout"><button type="submit">Log out</button></form>`
      : `<p><a href="/app/login">Log in</a></p>`;
  const links = ['one', 'two', 'three', 'four']
    .map(
      (g) =>
        `<li>group ${g}: <a href="/app/group/${g}/cacheable/summary">cacheable summary</a>, <a href="/app/group/${g}/uncacheable/activity">uncacheable activity</a></li>`,
    )
    .join('');
  return page('Shared session demo', `<p id="status">${status}</p>${member}${actions}<ul>${links}</ul>`);
}

/** Shown instead of a page that depends on the session while Redis is down: "try again", never "log in". */
export function unavailablePage(): string {
  return page(
    'Shared session demo',
    '<p id="status" class="refused">Sessions are unavailable, try again in a moment.</p><p><a href="">Try again</a></p>',
  );
}

/** GET /app/logout: logging out changes state, so it takes a POST; a link only shows this form. */
export function logoutPage(): string {
  return page(
    'Log out',
    '<form method="post" action="/app/logout"><p>Log out of the demo?</p><button type="submit">Log out</button></form><p><a href="/app">home</a></p>',
  );
}

export function loginPage(error?: string): string {
  return page(
    'Log in',
    `${error ? `<p class="refused" id="error">${escape(error)}</p>` : ''}
<form method="post" action="/app/login">
  <p><label>Email <input type="text" name="email" autocomplete="username"></label></p>
  <p><label>Password <input type="password" name="password" autocomplete="current-password"></label></p>
  <p><label><input type="checkbox" name="remember" value="1"> Keep me signed in</label></p>
  <p><input type="submit" value="Login"></p>
</form>`,
  );
}

export function groupPage(
  kind: 'cacheable' | 'uncacheable',
  groupId: string,
  name: string,
  responseId: string,
  timestamp: number,
  user?: string,
): string {
  const who = user ? `<p id="user">Seen by ${escape(user)}</p>` : '';
  return page(
    `Group ${groupId}: ${name}`,
    `<p id="kind">${kind}</p>${who}<p>response <code id="response-id">${responseId}</code> made by the app at <code>${new Date(timestamp).toISOString()}</code></p><p><a href="/app">home</a></p>`,
  );
}

/** One user on the admin page: their fixture groups and live sessions. */
export interface AdminUserView {
  email: string;
  groups: string[];
  sessions: UserSession[];
}

const post = (action: string, label: string, id: string) =>
  `<form method="post" action="${escape(action)}" style="display:inline"><button type="submit" id="${escape(id)}">${escape(label)}</button></form>`;

/** The administrator's page (/app/admin): users, their sessions, and the control buttons. */
export function adminPage(
  users: AdminUserView[],
  groups: string[],
  ownSessionId: string,
  done?: string,
  bans: LoginBan[] = [],
  warning?: string,
  status?: StatusFigures | StatusUnavailable,
): string {
  const rows = users
    .map((u) => {
      const slug = u.email.replace(/[^a-z0-9]/gi, '-');
      const base = `/app/admin/users/${encodeURIComponent(u.email)}`;
      const sessions = u.sessions
        .map((s) => {
          const groupsText = s.groups.join(', ') || '(no group)';
          const own = s.sessionId === ownSessionId ? ' (this session)' : '';
          const when = s.createdAt ? s.createdAt.toISOString() : 'unknown';
          const from = [s.ip, s.userAgent].filter(Boolean).join(', ') || 'not recorded';
          return `<li class="session">${escape(s.sessionId.slice(-6))}${own}: groups ${escape(groupsText)}; logged in ${when} from ${escape(from)}; last seen ${s.lastSeenAt.toISOString()}</li>`;
        })
        .join('');
      const removals = u.groups
        .map((g) => post(`${base}/groups/${encodeURIComponent(g)}/remove`, `Remove from ${g}`, `remove-${slug}-${g}`))
        .join(' ');
      return `<tr id="user-${escape(slug)}"><td>${escape(u.email)}</td><td><span class="count">${u.sessions.length}</span> session(s)<ul>${sessions}</ul></td><td>${removals} ${post(`${base}/logout-everywhere`, 'Log out everywhere', `logout-${slug}`)}</td></tr>`;
    })
    .join('');
  const purges = groups.map((g) => post(`/app/admin/groups/${encodeURIComponent(g)}/purge-cache`, `Purge ${g}`, `purge-${g}`)).join(' ');
  const banRows = bans
    .map((b, i) => {
      const subject = b.user ?? b.address;
      const who = b.user === undefined ? `address ${b.address} (every user)` : `${b.user} at ${b.address}`;
      return `<li class="ban">${escape(who)} until ${b.until.toISOString()} ${post(`/app/admin/bans/${encodeURIComponent(subject)}/lift`, 'Lift', `lift-ban-${i}`)}</li>`;
    })
    .join('');
  const banList = `<h2>Login bans</h2><ul id="bans">${banRows || '<li>none</li>'}</ul>`;
  return page(
    'Administration',
    `${warning ? `<p id="warning" role="alert"><strong>Warning:</strong> ${escape(warning)}</p>` : done ? `<p id="done">${escape(done)}</p>` : ''}<table><tr><th>user</th><th>sessions</th><th>actions</th></tr>${rows}</table>${banList}
<p>Purge a group's cache at nginx: ${purges}</p>
<p>${post('/app/admin/not-before', 'Log everyone out (sessions issued before now)', 'not-before')}</p>${status ? statusPanel(status) : ''}<p><a href="/app">home</a></p>`,
  );
}

const NO_DATA = 'no data yet';
const milliseconds = (seconds: number) => (Number.isFinite(seconds) ? `${(seconds * 1000).toFixed(1)} ms` : NO_DATA);
const byDoor = (figures: StatusFigure[], format: (f: StatusFigure) => string) =>
  figures.length ? figures.map((f) => escape(`${f.job}${f.result ? ` ${f.result}` : ''}: ${format(f)}`)).join('<br>') : NO_DATA;

/** The status panel (the admin page's foot): figures from Prometheus, or why there are none. */
export function statusPanel(status: StatusFigures | StatusUnavailable): string {
  if ('unavailable' in status) return `<h2>Status</h2><p id="status-panel">${escape(status.unavailable)}</p>`;
  const rate = (f: StatusFigure) => (Number.isFinite(f.value) ? `${f.value.toFixed(2)}/s` : NO_DATA);
  const hit = Number.isFinite(status.cacheHitRate) ? `${(status.cacheHitRate * 100).toFixed(1)}%` : NO_DATA;
  const rows: [string, string, string][] = [
    ['decisions', 'Decisions per second, by door and result (last minute)', byDoor(status.decisionsPerSecond, rate)],
    ['hit-rate', "nginx's decision-cache hit rate (last minute)", escape(hit)],
    ['revocation-lag', 'Revocation lag, p99 (publish to acknowledgement, 5 minutes)', escape(milliseconds(status.revocationLagP99))],
    ['redis-p99', 'Redis round trip, p99, by door (last minute)', byDoor(status.redisP99, (f) => milliseconds(f.value))],
  ];
  const body = rows.map(([id, label, value]) => `<tr id="status-${id}"><th>${escape(label)}</th><td>${value}</td></tr>`).join('');
  return `<h2>Status</h2><table id="status-panel">${body}</table>`;
}

/** "Your sessions" (/app/sessions): the user's own sessions, this one marked, each other one with a button to sign it out. */
export function ownSessionsPage(sessions: OwnSession[], done?: string): string {
  const items = sessions
    .map((s, i) => {
      const from = [s.ip, s.userAgent].filter(Boolean).join(', ') || 'not recorded';
      const created = s.createdAt ? s.createdAt.toISOString() : 'unknown';
      const action = s.current
        ? '<strong class="current">this session</strong>'
        : post(`/app/sessions/${encodeURIComponent(s.sessionId)}/revoke`, 'Sign out', `sign-out-${i}`);
      return `<li class="own-session">logged in ${created} from ${escape(from)}; last seen ${s.lastSeenAt.toISOString()} ${action}</li>`;
    })
    .join('');
  return page(
    'Your sessions',
    `${done ? `<p id="done">${escape(done)}</p>` : ''}<p><span id="count">${sessions.length}</span> session(s)</p><ul id="sessions">${items}</ul>
<p>${post('/app/sessions/others/revoke', 'Sign out all other sessions', 'sign-out-others')}</p><p><a href="/app">home</a></p>`,
  );
}

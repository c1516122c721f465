/** The demo's few HTML pages: plain, no template engine. */
const escape = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

export function page(title: string, body: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escape(title)}</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem}
code{background:#f2f2f2;padding:0 .2em}.refused{color:#a00}</style></head>
<body><h1>${escape(title)}</h1>${body}</body></html>`;
}

export function homePage(email: string | undefined): string {
  const status = email ? `Logged in as '${escape(email)}'` : 'You are not logged in!';
  const actions = email
    ? `<form method="post" action="/app/logout"><button type="submit">Log out</button></form>`
    : `<p><a href="/app/login">Log in</a></p>`;
  const links = ['one', 'two', 'three', 'four']
    .map(
      (g) =>
        `<li>group ${g}: <a href="/app/group/${g}/cacheable/summary">cacheable summary</a>, <a href="/app/group/${g}/uncacheable/activity">uncacheable activity</a></li>`,
    )
    .join('');
  return page('Shared session demo', `<p id="status">${status}</p>${actions}<ul>${links}</ul>`);
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

/**
 * Team mode through a real JupyterHub in the browser: `jupyter compute-servers team-try` (the
 * command users run to try it: PostgreSQL, JupyterHub with the DummyAuthenticator, each user's
 * Jupyter in team mode) is started for this file. Alice logs in on the Hub's login page,
 * creates a compute server in her Lab and sees it; Bob, in a browser context of his own, sees
 * none of hers (and her name nowhere) and creates his; Alice again sees only hers; the admin
 * sees both by owner in the Team section, and revokes a user's access from the Access part
 * (confirming) and restores it, each shown without a reload. Ctrl-C (SIGINT) then stops
 * the command, which must exit cleanly.
 *
 * Plain Playwright, not galata's page: galata's fixtures expect a Jupyter server of their own
 * at baseURL (with galata's server settings); the Hub's users' servers are the command's.
 */
import { Browser, expect, Page, test } from '@playwright/test';
import { ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import * as net from 'net';
import * as path from 'path';

const SIDEBAR_ID = 'jp-compute-servers-sidebar';
const ROOT = path.resolve(__dirname, '..', '..');
// A user's server spawns (a Jupyter server process) and its Lab loads: slow on a busy machine.
const SPAWN_TIMEOUT = 150 * 1000;

let command: ChildProcess | undefined;
let url = '';
let output = '';

/** The venv's Python when there is one (make setup), else the one on PATH. */
function python(): string {
  const venv = path.join(ROOT, '.venv', 'bin', 'python');
  return fs.existsSync(venv) ? venv : 'python';
}

/** A port of 127.0.0.1 free now (UI_TESTS_HUB_PORT, or one the system picks). */
async function freePort(): Promise<string> {
  if (process.env.UI_TESTS_HUB_PORT) {
    return process.env.UI_TESTS_HUB_PORT;
  }
  const server = net.createServer();
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise(resolve => server.close(resolve));
  return String(port);
}

test.describe.configure({ mode: 'serial' });
test.setTimeout(10 * 60 * 1000);

test.beforeAll(async () => {
  test.setTimeout(3 * 60 * 1000);
  command = spawn(
    python(),
    [
      '-m',
      'jupyter_compute_servers.cli',
      'team-try',
      '--port',
      await freePort(),
      '--proxy',
      path.join(ROOT, 'node_modules', '.bin', 'configurable-http-proxy')
    ],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] }
  );
  command.stderr!.on('data', chunk => (output += chunk));
  await new Promise<void>((resolve, reject) => {
    command!.stdout!.on('data', chunk => {
      output += chunk;
      const running = /Team mode is running at (\S+)/.exec(output);
      if (running && output.includes('Press Ctrl-C to stop everything.')) {
        url = running[1];
        resolve();
      }
    });
    command!.on('exit', code =>
      reject(new Error(`team-try exited (${code}):\n${output}`))
    );
  });
});

test.afterAll(async () => {
  if (!command || command.exitCode !== null) {
    return;
  }
  const exited = new Promise<number | null>(resolve =>
    command!.on('exit', code => resolve(code))
  );
  command.kill('SIGINT');
  expect(await exited, output).toBe(0);
  expect(output).toContain('Stopped; removed');
});

/** ``user`` logged in through the Hub's login page, in a browser context of their own, at
 * their Lab with the compute servers' panel open. */
async function logIn(browser: Browser, user: string): Promise<Page> {
  const context = await browser.newContext({ baseURL: url });
  const page = await context.newPage();
  await page.goto('/hub/login');
  await page.locator('#username_input').fill(user);
  // The DummyAuthenticator: any password logs in (team-try says so).
  await page.locator('#password_input').fill('any password');
  await page.locator('#login_submit').click();
  await page.waitForURL(`**/user/${user}/lab**`, { timeout: SPAWN_TIMEOUT });
  await openPanel(page);
  return page;
}

async function openPanel(page: Page): Promise<void> {
  // The Lab is up once its splash screen is gone (it restores its layout before that).
  await page
    .locator('#jupyterlab-splash')
    .waitFor({ state: 'detached', timeout: SPAWN_TIMEOUT });
  const tab = page.locator(`.lm-TabBar-tab[data-id="${SIDEBAR_ID}"]`);
  // A click is a toggle: click until the panel is the side bar's current one.
  await expect(async () => {
    if ((await tab.getAttribute('aria-selected')) !== 'true') {
      await tab.click();
    }
    await expect(tab).toHaveAttribute('aria-selected', 'true', {
      timeout: 2000
    });
  }).toPass({ timeout: 30 * 1000 });
  await expect(panel(page)).toBeVisible();
}

function panel(page: Page) {
  return page.locator(`#${SIDEBAR_ID}`);
}

function rows(page: Page) {
  return panel(page).locator('.jp-ComputeServers-server');
}

/** Create a local compute server through the panel's dialog; wait for its row. */
async function create(page: Page, name: string): Promise<void> {
  await panel(page).locator('.jp-ComputeServers-new').click();
  const dialog = page.locator('.jp-Dialog');
  await dialog.locator('input[name="name"]').fill(name);
  await dialog.locator('.jp-ComputeServers-createButton').click();
  await expect(dialog).toHaveCount(0);
  await expect(
    panel(page)
      .locator(`.jp-ComputeServers-server[data-server-name="${name}"]`)
      .locator('.jp-ComputeServers-badge')
  ).toHaveAttribute('data-state', 'deprovisioned');
}

async function serverNames(page: Page): Promise<string[]> {
  return rows(page).evaluateAll(elements =>
    elements.map(e => (e as HTMLElement).dataset.serverName ?? '')
  );
}

test('two users log in through the Hub and each sees only their own servers; the admin sees both', async ({
  browser
}) => {
  // Alice: her server in her Lab.
  const alice = await logIn(browser, 'alice');
  await expect(panel(alice).locator('.jp-ComputeServers-team h3')).toHaveText(
    'Team'
  );
  await create(alice, 'alice-box');
  expect(await serverNames(alice)).toEqual(['alice-box']);

  // Bob, in another browser context: none of Alice's, her name nowhere; then his own.
  const bob = await logIn(browser, 'bob');
  await expect(panel(bob).locator('.jp-ComputeServers-team h3')).toHaveText(
    'Team'
  );
  await expect(
    panel(bob).locator('.jp-ComputeServers-servers > .jp-ComputeServers-empty')
  ).toContainText('No compute servers yet');
  await expect(rows(bob)).toHaveCount(0);
  await expect(bob.locator('body')).not.toContainText('alice');
  await create(bob, 'bob-box');
  expect(await serverNames(bob)).toEqual(['bob-box']);
  await expect(bob.locator('body')).not.toContainText('alice');

  // Alice, her Lab loaded again: hers only.
  await alice.reload();
  await openPanel(alice);
  await expect(rows(alice)).toHaveCount(1);
  expect(await serverNames(alice)).toEqual(['alice-box']);
  await expect(alice.locator('body')).not.toContainText('bob-box');

  // The admin: both, by owner, in the Team section; none in their own list.
  const admin = await logIn(browser, 'admin');
  const team = panel(admin).locator('.jp-ComputeServers-team');
  await expect(team.locator('h3')).toHaveText('Team (admin)');
  // (each row ends with its Revoke access button)
  await expect(
    team.locator('.jp-ComputeServers-team-owners li[data-owner="alice"]')
  ).toHaveText(/^alice: alice-box \(deprovisioned\) Revoke access$/);
  const bobRow = team.locator(
    '.jp-ComputeServers-team-owners li[data-owner="bob"]'
  );
  await expect(bobRow).toHaveText(
    /^bob: bob-box \(deprovisioned\) Revoke access$/
  );
  await expect(team.locator('.jp-ComputeServers-team-owners > li')).toHaveCount(
    2
  );
  await expect(
    panel(admin).locator(
      '.jp-ComputeServers-servers > .jp-ComputeServers-empty'
    )
  ).toContainText('No compute servers yet');
  await expect(rows(admin)).toHaveCount(0);

  // Revoke on Bob's row asks first, saying what it does; cancelled, nothing changes. (A
  // running server's user revoked and restored: tests/test_team_revoke_lab.py.)
  const access = team.locator('.jp-ComputeServers-access');
  await expect(access).toContainText("No user's access is revoked.");
  await bobRow.locator('.jp-ComputeServers-revoke').click();
  const dialog = admin.locator('.jp-Dialog');
  await expect(dialog).toContainText("Revoke bob's access?");
  await expect(dialog).toContainText('Their compute servers keep running');
  await dialog.locator('.jp-mod-reject').click();
  await expect(dialog).toHaveCount(0);
  await expect(access).toContainText("No user's access is revoked.");

  // Carol, who has no server, revoked by name: listed without a reload, then restored.
  await access.locator('input[name="user"]').fill('carol');
  await access.locator('.jp-ComputeServers-revoke').click();
  await expect(dialog).toContainText("Revoke carol's access?");
  await dialog.locator('.jp-ComputeServers-confirm').click();
  await expect(team.locator('[role="status"]')).toContainText(
    "carol's access is revoked"
  );
  const revoked = access.locator(
    '.jp-ComputeServers-revocations li[data-user="carol"]'
  );
  await expect(revoked).toContainText('carol: revoked by admin');
  await revoked.locator('.jp-ComputeServers-restore').click();
  await expect(team.locator('[role="status"]')).toContainText(
    "carol's access is restored"
  );
  await expect(access.locator('.jp-ComputeServers-revocations li')).toHaveCount(
    0
  );
});

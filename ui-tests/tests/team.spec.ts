/**
 * Team mode in the browser: one Jupyter in team mode whose user is an admin (root; see
 * jupyter_server_test_config.py), and a second owner (alice) whose server is made through the
 * command line on the same store. The panel's Team section shows the admin the quota, everyone's
 * servers by owner, the (empty) GPU queues and this month's spend per user, whose CSV
 * downloads. (Two users logged in through a real JupyterHub in the browser are left to the
 * Python tests' Hub, tests/test_team_hub.py, which checks each sees only their own.)
 */
import { expect, test } from '@jupyterlab/galata';
import { execFileSync } from 'child_process';
import * as fs from 'fs';

import { panel, SIDEBAR_ID } from './helpers';

interface ITeamInfo {
  data_dir: string;
  cli: string;
  env: Record<string, string>;
}

function teamInfo(): ITeamInfo {
  const file = process.env.UI_TESTS_TEAM_INFO;
  if (!file || !fs.existsSync(file)) {
    throw new Error(
      `The team-mode server wrote no ${file}: is it started (playwright.config.js)?`
    );
  }
  return JSON.parse(fs.readFileSync(file, 'utf8'));
}

/** Alice's server, made as alice through the command line on the admin's store. */
function createAs(user: string, name: string): void {
  const info = teamInfo();
  execFileSync(
    info.cli,
    [
      '--set',
      `data_dir=${info.data_dir}`,
      '--set',
      'team_mode=true',
      '--set',
      `user=${user}`,
      'create',
      name
    ],
    { env: { ...process.env, ...info.env }, stdio: 'pipe' }
  );
}

test.describe('Team mode', () => {
  test("the admin's view shows everyone's servers by owner and this month's spend", async ({
    page
  }) => {
    const name = `alice-ui-${Date.now() % 100000}`;
    createAs('alice', name);
    await page.sidebar.openTab(SIDEBAR_ID);
    const team = panel(page).locator('.jp-ComputeServers-team');
    await expect(team.locator('h3')).toHaveText('Team (admin)');
    // The quota, shown as before a create.
    await expect(team.locator('.jp-ComputeServers-team-quota')).toContainText(
      'You may start 2 more compute servers (0 of 2 running)'
    );
    await expect(team.locator('.jp-ComputeServers-team-quota')).toContainText(
      '$25.00 of $25.00 left this month'
    );
    // Alice's server, with its owner; the admin's own list (root's) does not have it.
    await expect(
      team.locator('.jp-ComputeServers-team-owners li[data-owner="alice"]')
    ).toContainText(`${name} (deprovisioned)`);
    await expect(
      panel(page).locator(
        `.jp-ComputeServers-server[data-server-name="${name}"]`
      )
    ).toHaveCount(0);
    await expect(team).toContainText('No server is waiting for a GPU.');
    await expect(team).toContainText('Nothing spent yet this month.');
    // The spend's CSV downloads with the page's own credentials.
    const link = team.locator('.jp-ComputeServers-spend-csv');
    const href = await link.getAttribute('href');
    expect(href).toMatch(/audit\/spend\?format=csv&month=\d{4}-\d{2}$/);
    const csv = await page.request.get(href!);
    expect(csv.ok()).toBe(true);
    expect(csv.headers()['content-type']).toMatch(/^text\/csv/);
    expect((await csv.text()).split('\r\n')[0]).toBe(
      'month,kind,name,currency,spent,servers,deleted_servers,unknown'
    );
  });
});

/**
 * Team mode in the browser: one Jupyter in team mode whose user is an admin (root; see
 * jupyter_server_test_config.py), and a second owner (alice) whose server is made through the
 * command line on the same store. The panel's Team section shows the admin the quota, everyone's
 * servers by owner, the (empty) GPU queues and this month's spend per user, whose CSV
 * downloads; two owners' servers of one name told apart, a shared host with who holds its
 * slice, and the audit log's lines with its CSV. Two users logged in through a real
 * JupyterHub in the browser, each seeing only their own: hub.spec.ts.
 */
import { expect, test } from '@jupyterlab/galata';
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

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

/** A server made as ``user`` through the command line on the admin's store; its id. */
function createAs(user: string, name: string): number {
  const info = teamInfo();
  const out = execFileSync(
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
    { env: { ...process.env, ...info.env }, stdio: 'pipe', encoding: 'utf8' }
  );
  return Number(/\(id (\d+)\)/.exec(out)![1]);
}

/** Register a shared host on the store and give a server a slice of it with a GPU, as the
 * ssh cloud's start does (no SSH host needed to see who holds what). */
function giveSlice(host: string, serverId: number): void {
  const info = teamInfo();
  const script = `
import sys, time
from jupyter_compute_servers.db import Database
from jupyter_compute_servers.hosts import HostStore
from jupyter_compute_servers.models import GpuSpec
database = Database(sys.argv[1])
hosts = HostStore(database, clock=time.time)
gpu = {"index": 0, "uuid": "GPU-0", "name": "NVIDIA A100-SXM4-80GB", "memory_total": 2**36}
host = hosts.create(name=sys.argv[2], hostname="127.0.0.1", port=22, username="",
                    inventory={"cpu_count": 8, "memory_total": 2**35, "gpus": [gpu]})
hosts.allocate(int(sys.argv[3]), host, 2, 4.0, GpuSpec(gpu["name"], 1))
database.close()
`;
  execFileSync(
    path.join(path.dirname(info.cli), 'python'),
    [
      '-c',
      script,
      `sqlite:///${path.join(info.data_dir, 'servers.db')}`,
      host,
      String(serverId)
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
  test("the admin's view tells owners' same-named servers apart, shows a host's slices and the audit log", async ({
    page
  }) => {
    const name = `gpu-box-${Date.now() % 100000}`;
    const alices = createAs('alice', name);
    const bobs = createAs('bob', name); // Bob's name is his own: no "already exists"
    const host = `lab-${Date.now() % 100000}`;
    giveSlice(host, alices);
    await page.sidebar.openTab(SIDEBAR_ID);
    const team = panel(page).locator('.jp-ComputeServers-team');
    await expect(
      team.locator('.jp-ComputeServers-team-owners li[data-owner="alice"]')
    ).toContainText(`${name} (deprovisioned)`);
    await expect(
      team.locator('.jp-ComputeServers-team-owners li[data-owner="bob"]')
    ).toContainText(`${name} (deprovisioned)`);
    // The shared host, and whose server holds its slice.
    const shared = team
      .locator('.jp-ComputeServers-team-hosts > li')
      .filter({ hasText: host });
    await expect(shared.locator('.jp-ComputeServers-team-host')).toHaveText(
      `${host} (127.0.0.1): 1x NVIDIA A100-SXM4-80GB; its key is not confirmed yet`
    );
    await expect(
      shared.locator(
        `.jp-ComputeServers-team-slices li[data-server-id="${alices}"]`
      )
    ).toHaveText(`${name} of alice: 2 CPUs, 4 GB, NVIDIA A100-SXM4-80GB`);
    // The audit log: each create with its owner.
    const lines = team.locator('.jp-ComputeServers-audit-line');
    await expect(lines.filter({ hasText: `${name} (${bobs}) of` })).toHaveText(
      `bob: create (local), ${name} (${bobs}) of bob`
    );
    await expect(
      lines.filter({ hasText: `${name} (${alices}) of` })
    ).toHaveText(`alice: create (local), ${name} (${alices}) of alice`);
    const href = await team
      .locator('.jp-ComputeServers-audit-csv')
      .getAttribute('href');
    expect(href).toMatch(/audit\?format=csv$/);
    const csv = await page.request.get(href!);
    expect(csv.ok()).toBe(true);
    expect(csv.headers()['content-type']).toMatch(/^text\/csv/);
    const text = await csv.text();
    expect(text.split('\r\n')[0]).toBe(
      'at,actor,owner,server_id,server_name,action,detail'
    );
    expect(text).toContain(`,bob,${bobs},${name},create,`);
  });
});

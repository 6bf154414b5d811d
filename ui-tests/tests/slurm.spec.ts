/**
 * The create dialog on the slurm cloud, in the browser, against a real one-node Slurm cluster
 * (started by jupyter_server_test_config.py for this project's server): once the cluster's
 * login node is registered, the dialog offers the partitions sinfo reports, with their time
 * limits, CPUs, memory and GPU GRES, keeps the GPU to what the partition has, and creates the
 * server with the options chosen.
 */
import { expect, test } from '@jupyterlab/galata';
import * as fs from 'fs';

import { openCreateDialog, removeTestServers, waitForState } from './helpers';

test.describe('The slurm cloud', () => {
  test.afterEach(async ({ page }) => {
    await removeTestServers(page);
  });

  test('the create dialog offers the cluster partitions', async ({ page }) => {
    const login = JSON.parse(
      fs.readFileSync(process.env.UI_TESTS_SLURM_INFO!, 'utf-8')
    );
    const hosts = '/compute-servers/api/hosts';
    const listed = (await (await page.request.get(hosts)).json())
      .hosts as any[];
    if (!listed.some(h => h.name === 'login')) {
      const registered = await page.request.post(hosts, { data: login });
      expect(registered.status()).toBe(201);
      // Pinned from the known_hosts of the server's HOME: trusted at once.
      expect((await registered.json()).trusted).toBe(true);
    }

    const name = `ui-slurm-${Date.now() % 100000}`;
    const dialog = await openCreateDialog(page);
    await dialog.locator('select[name="cloud"]').selectOption('slurm');

    const partition = dialog.locator('select[name="partition"]');
    await expect(partition.locator('option')).toHaveText([
      /^debug \(up to 2 h · \d+ CPU · 3\.9 GB · 2× a100\)$/,
      /^long \(up to 10 h · \d+ CPU · 3\.9 GB · 2× a100\)$/
    ]);
    await expect(dialog.locator('select[name="cluster"]')).toHaveValue('hpc');
    await expect(
      dialog.locator(
        '[data-field="time_minutes"] .jp-ComputeServers-fieldLabel'
      )
    ).toHaveText('Time limit, minutes (1–120)');

    await partition.selectOption('long');
    await expect(
      dialog.locator(
        '[data-field="time_minutes"] .jp-ComputeServers-fieldLabel'
      )
    ).toHaveText('Time limit, minutes (1–600)');
    const gpu = dialog.locator('select[name="gpu_type"]');
    await expect(gpu.locator('option')).toHaveText(['None', 'a100']);
    await gpu.selectOption('a100');
    await dialog.locator('input[name="gpu_count"]').fill('2');
    await dialog.locator('input[name="time_minutes"]').fill('45');
    await dialog.locator('input[name="name"]').fill(name);
    await dialog.locator('.jp-ComputeServers-createButton').click();
    await expect(dialog).toHaveCount(0);
    await waitForState(page, name, 'deprovisioned');

    const servers = (
      await (await page.request.get('/compute-servers/api/servers')).json()
    ).servers as any[];
    const created = servers.find(s => s.name === name);
    expect(created.config.extra).toEqual({
      cluster: 'hpc',
      partition: 'long',
      time_minutes: 45
    });
    expect(created.config.gpu).toEqual({ type: 'a100', count: 2 });
  });
});

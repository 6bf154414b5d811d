/**
 * The openstack cloud in the browser, against the fake OpenStack of the Python tests (started
 * by jupyter_server_test_config.py for this project's server; its VMs are real OpenSSH sshds):
 * the create dialog offers the project's flavors with their GPUs, a gpu_medium server is created
 * and started, and a notebook cell runs on its kernel.
 */
import { expect, test } from '@jupyterlab/galata';

import {
  removeTestServers,
  row,
  TRANSITION_TIMEOUT,
  waitForState,
  launchNotebook,
  openCreateDialog
} from './helpers';

test.describe('The openstack cloud', () => {
  test.setTimeout(5 * TRANSITION_TIMEOUT);

  test.afterEach(async ({ page }) => {
    await removeTestServers(page);
  });

  test('a gpu_medium server from the create dialog runs a cell', async ({
    page
  }) => {
    const name = `ui-os-${Date.now() % 100000}`;
    const dialog = await openCreateDialog(page);
    await dialog.locator('select[name="cloud"]').selectOption('openstack');

    // The project's flavors, with what Nova says they have (GPUs from their extra specs).
    const flavor = dialog.locator('select[name="machine_type"]');
    await expect(
      flavor.locator('optgroup[label="With GPUs"] option', {
        hasText: 'gpu_medium'
      })
    ).toHaveText('gpu_medium · 4 vCPU · 8 GB · 1× V100');
    await expect(
      flavor.locator('optgroup[label="General purpose"] option').first()
    ).toHaveText('ci_medium · 4 vCPU · 8 GB');
    await flavor.selectOption('gpu_medium');
    await expect(dialog.locator('select[name="gpu_type"]')).toHaveValue('v100');

    await dialog.locator('input[name="name"]').fill(name);
    await dialog.locator('.jp-ComputeServers-createButton').click();
    await expect(dialog).toHaveCount(0);
    await waitForState(page, name, 'deprovisioned');
    const servers = (
      await (await page.request.get('/compute-servers/api/servers')).json()
    ).servers as any[];
    const created = servers.find(s => s.name === name);
    expect(created.cloud).toBe('openstack');
    expect(created.config.machine_type).toBe('gpu_medium');
    expect(created.config.gpu).toEqual({ type: 'v100', count: 1 });

    // Start it: Nova builds the VM, its host key comes from the console log, SSH connects.
    await row(page, name).locator('button[data-action="start"]').click();
    await waitForState(page, name, 'running');

    // A notebook on its kernel runs in the VM's workspace (in the notebook's folder there).
    await launchNotebook(page, name);
    await page.notebook.setCell(
      0,
      'code',
      'import os; print(os.getcwd(), 6 * 7)'
    );
    await page.notebook.runCell(0);
    await expect
      .poll(async () => (await page.notebook.getCellTextOutput(0))?.join(''), {
        timeout: TRANSITION_TIMEOUT
      })
      // The notebook's folder under the VM's workspace (the fake VM's home is on its disk).
      .toMatch(/jcs-ui-openstack-.*\/home\/work\/\S* 42/);
    await page.notebook.close(true);
  });
});

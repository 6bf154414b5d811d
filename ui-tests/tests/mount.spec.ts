/**
 * A live workspace in the browser: a local compute server created with its workspace
 * "Mounted live" is mounted by itself when it starts (the row says so, and Sync is off), a
 * notebook's kernel there reads a file of the Jupyter root and writes one back that the file
 * browser's contents API sees with no sync; switched to synced in the edit dialog, it is
 * unmounted. The server is removed at the end.
 */
import { expect, IJupyterLabPageFixture, test } from '@jupyterlab/galata';

import {
  removeTestServers,
  row,
  TRANSITION_TIMEOUT,
  waitForState,
  launchNotebook,
  openCreateDialog
} from './helpers';

const CONTENTS = '/api/contents';

async function putFile(
  page: IJupyterLabPageFixture,
  path: string,
  content: string
): Promise<void> {
  const response = await page.request.put(`${CONTENTS}/${path}`, {
    data: { type: 'file', format: 'text', content }
  });
  expect(response.ok()).toBe(true);
}

test.describe('Live workspace', () => {
  test.setTimeout(5 * TRANSITION_TIMEOUT);
  test.use({ viewport: { width: 1600, height: 900 } });

  test.afterEach(async ({ page }) => {
    await removeTestServers(page);
  });

  test('a server mounted live: mounted at start, a kernel reads and writes the files here', async ({
    page,
    tmpPath
  }) => {
    const name = `ui-mount-${Date.now() % 100000}`;
    // In the test's own directory of the Jupyter root, where galata's notebooks open.
    await putFile(page, `${tmpPath}/ui-mount-in.txt`, 'from the Jupyter root');

    // Created with the workspace mounted: the dialog says what that means.
    const dialog = await openCreateDialog(page);
    await dialog.locator('input[name="name"]').fill(name);
    await dialog
      .locator('select[name="workspace_mode"]')
      .selectOption('mounted');
    await expect(dialog).toContainText('round trip');
    await expect(dialog.locator('input[name="mount_path"]')).toBeVisible();
    await dialog.locator('.jp-ComputeServers-createButton').click();
    await expect(dialog).toHaveCount(0);
    await waitForState(page, name, 'deprovisioned');

    // Started: mounted by itself, shown on its row; Sync is off.
    await row(page, name).locator('button[data-action="start"]').click();
    await waitForState(page, name, 'running');
    const mount = row(page, name).locator('.jp-ComputeServers-mount');
    await expect(mount).toHaveAttribute('data-mount-state', 'mounted', {
      timeout: TRANSITION_TIMEOUT
    });
    await expect(mount).toContainText('The Jupyter root is mounted at');
    await expect(
      row(page, name).locator('.jp-ComputeServers-syncButton')
    ).toBeDisabled();

    // A notebook on its kernel: in the mounted tree, reading and writing the root's files.
    await launchNotebook(page, name);
    await page.notebook.setCell(
      0,
      'code',
      "print(open('ui-mount-in.txt').read()); open('ui-mount-out.txt', 'w').write('from the kernel')"
    );
    await page.notebook.runCell(0);
    await expect
      .poll(async () => (await page.notebook.getCellTextOutput(0))?.join(''), {
        timeout: TRANSITION_TIMEOUT
      })
      .toContain('from the Jupyter root');
    const written = await page.request.get(
      `${CONTENTS}/${tmpPath}/ui-mount-out.txt`
    );
    expect(written.ok()).toBe(true);
    expect((await written.json()).content).toBe('from the kernel');
    await page.notebook.close(true);

    // Switched to a synced copy in the edit dialog: unmounted, Sync back on.
    await row(page, name).locator('.jp-ComputeServers-editButton').click();
    const edit = page.locator('.jp-Dialog');
    await edit.locator('select[name="workspace_mode"]').selectOption('synced');
    await edit.locator('.jp-ComputeServers-editSave').click();
    await expect(edit).toHaveCount(0);
    await expect(mount).toHaveCount(0, { timeout: TRANSITION_TIMEOUT });
    await expect(
      row(page, name).locator('.jp-ComputeServers-syncButton')
    ).toBeEnabled();
  });
});

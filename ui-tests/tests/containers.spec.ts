/**
 * A container image for real, in the browser: pick the podman image built here (Debian's
 * python3-ipykernel, see tests/container_image.py) in the create dialog, start the server,
 * and run a cell whose kernel is in the container (Debian's Python under /usr, podman's mark
 * /run/.containerenv, the image's own marker file).
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

test.describe('Container images', () => {
  test.setTimeout(5 * TRANSITION_TIMEOUT);

  test.afterEach(async ({ page }) => {
    await removeTestServers(page);
  });

  test('pick the container image, start, and run a cell in the container', async ({
    page
  }) => {
    const name = `ui-podman-${Date.now() % 100000}`;
    const dialog = await openCreateDialog(page);
    const card = dialog.locator(
      '.jp-ComputeServers-imageCard[data-image-id="debian-test"]'
    );
    await expect(card).toBeVisible();
    await card.click();
    await expect(card).toHaveAttribute('aria-checked', 'true');
    await dialog.locator('input[name="name"]').fill(name);
    await dialog.locator('.jp-ComputeServers-createButton').click();
    await expect(dialog).toHaveCount(0);
    await waitForState(page, name, 'deprovisioned');

    await row(page, name).locator('button[data-action="start"]').click();
    await waitForState(page, name, 'running');

    await launchNotebook(page, name, 'Notebook');
    await expect(page.locator('.jp-NotebookPanel')).toBeVisible();
    await page.notebook.setCell(
      0,
      'code',
      'import os, sys; print(sys.prefix, os.path.exists("/run/.containerenv"), ' +
        'open("/etc/jcs-test-image").read().split(":")[0])'
    );
    await page.notebook.runCell(0);
    await expect
      .poll(async () => (await page.notebook.getCellTextOutput(0))?.join(''), {
        timeout: TRANSITION_TIMEOUT
      })
      .toContain('/usr True localhost/jcs-test-ipykernel');
  });
});

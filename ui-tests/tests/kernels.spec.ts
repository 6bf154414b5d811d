/**
 * Remote kernels on a local compute server, in the browser and without reloading the page:
 * the launcher gets a section for the new server, a notebook runs on its kernel (in the
 * server's workspace), the notebook toolbar names the server, the kernel picker groups it,
 * and the sidebar lists the kernel and shuts it down. The server is removed at the end.
 */
import { expect, test } from '@jupyterlab/galata';

import {
  createServer,
  panel,
  removeTestServers,
  row,
  SIDEBAR_ID,
  TRANSITION_TIMEOUT,
  waitForState,
  launcherSection
} from './helpers';

test.describe('Remote kernels', () => {
  test.setTimeout(5 * TRANSITION_TIMEOUT);
  // Wide enough for the notebook toolbar to show the kernel name and the server beside the
  // open sidebar, rather than folding them into its "more" menu.
  test.use({ viewport: { width: 1600, height: 900 } });

  test.afterEach(async ({ page }) => {
    await removeTestServers(page);
  });

  test('a notebook on a compute server kernel, from launcher to shut down', async ({
    page
  }) => {
    const name = `ui-kern-${Date.now() % 100000}`;
    const displayName = `Python 3 (ipykernel) on ${name}`;

    // A new server: its kernel shows in the launcher without a reload, in a section of its
    // own and not in the Notebook section.
    await createServer(page, name);
    const section = await launcherSection(page, name);
    const notebookCard = section.locator('.jp-LauncherCard', {
      hasText: 'Python 3 (ipykernel) Notebook'
    });
    await expect(notebookCard).toBeVisible();
    await expect(notebookCard).toHaveAttribute(
      'title',
      new RegExp(`New notebook with ${displayName.replace(/[()]/g, '\\$&')}`)
    );
    await expect(
      section.locator('.jp-LauncherCard', {
        hasText: 'Python 3 (ipykernel) Console'
      })
    ).toBeVisible();
    await expect(
      page.locator(
        `.jp-LauncherCard[data-category="Notebook"][title="${displayName}"]`
      )
    ).toHaveCount(0);
    await expect(
      page.locator('.jp-LauncherCard[data-category="Notebook"]').first()
    ).toBeVisible();

    // Start it from the sidebar (a kernel would start it too, but slower to watch).
    await row(page, name).locator('button[data-action="start"]').click();
    await waitForState(page, name, 'running');
    const kernels = row(page, name).locator('.jp-ComputeServers-kernels');
    await expect(kernels).toContainText('No kernels running');

    // A notebook on its kernel runs in the server's workspace.
    await notebookCard.click();
    await expect(page.locator('.jp-NotebookPanel')).toBeVisible();
    await page.notebook.setCell(0, 'code', 'import os; print(os.getcwd())');
    await page.notebook.runCell(0);
    await expect
      .poll(async () => (await page.notebook.getCellTextOutput(0))?.join(''), {
        timeout: TRANSITION_TIMEOUT
      })
      .toContain('/disk');

    // The toolbar names the server, next to the kernel name.
    const toolbar = page.locator('.jp-NotebookPanel-toolbar');
    await expect(
      toolbar.locator('.jp-Toolbar-kernelName').first()
    ).toContainText(displayName);
    const indicator = toolbar.locator('.jp-ComputeServers-indicator');
    await expect(indicator).toBeVisible();
    await expect(indicator).toContainText(name);
    await expect(
      indicator.locator('.jp-ComputeServers-indicatorBody')
    ).toHaveAttribute('title', new RegExp(`compute server ${name}`));

    // The kernel picker groups the server's kernels.
    await toolbar.locator('.jp-Toolbar-kernelName').first().click();
    const dialog = page.locator('.jp-Dialog');
    const group = dialog.locator(
      `optgroup[label="Start on compute server ${name}"]`
    );
    await expect(group.locator('option')).toHaveText([displayName]);
    await expect(
      dialog.locator('optgroup:not([label*="compute server"]) option', {
        hasText: displayName
      })
    ).toHaveCount(0);
    await dialog.getByRole('button', { name: 'Cancel' }).click();
    await expect(dialog).toHaveCount(0);

    // The sidebar lists the kernel (attached: no orphan marker) and shuts it down.
    await page.sidebar.openTab(SIDEBAR_ID);
    const kernel = kernels.locator('.jp-ComputeServers-kernel');
    await expect(kernel).toHaveCount(1);
    await expect(kernel.locator('.jp-ComputeServers-kernelName')).toHaveText(
      'Python 3 (ipykernel)'
    );
    await expect(kernel).toHaveAttribute('data-attached', 'true');
    await expect(kernel.locator('.jp-ComputeServers-orphan')).toHaveCount(0);
    await expect(kernel.locator('.jp-ComputeServers-kernelAge')).toHaveText(
      /\d+ (s|min)/
    );
    await expect(kernel.locator('.jp-ComputeServers-kernelPath')).toHaveText(
      /Untitled.*\.ipynb/
    );
    await kernel.locator('.jp-ComputeServers-kernelShutdown').click();
    await expect(kernel).toHaveCount(0, { timeout: TRANSITION_TIMEOUT });
    await expect(kernels).toContainText('No kernels running');
    await expect(page.locator('.jp-ComputeServers-kernelError')).toHaveCount(0);

    // Close the notebook (no kernel to start again), then stop, deprovision, delete.
    await page.notebook.close(true);
    await row(page, name).locator('button[data-action="stop"]').click();
    await waitForState(page, name, 'off');
    await row(page, name).locator('button[data-action="deprovision"]').click();
    await dialog.locator('.jp-ComputeServers-confirm').click();
    await waitForState(page, name, 'deprovisioned');
    await row(page, name).locator('button[data-action="delete"]').click();
    await dialog.locator('.jp-ComputeServers-confirm').click();
    await expect(row(page, name)).toHaveCount(0);
    await expect(panel(page)).not.toContainText(name);

    // Its kernels leave the launcher, again without a reload.
    await expect(await launcherSection(page, name)).toHaveCount(0);
  });
});

/**
 * A compute server's whole life through the sidebar, on the local cloud: create (with a
 * refusal shown in the dialog first), start, stop, deprovision, delete.
 */
import { expect, test } from '@jupyterlab/galata';

import {
  actionButtons,
  panel,
  removeTestServers,
  row,
  SIDEBAR_ID,
  TRANSITION_TIMEOUT,
  waitForState,
  openCreateDialog
} from './helpers';

test.describe('Compute servers', () => {
  test.setTimeout(4 * TRANSITION_TIMEOUT);

  test.afterEach(async ({ page }) => {
    await removeTestServers(page);
  });

  test('create, start, stop, deprovision and delete a local server', async ({
    page
  }) => {
    const name = `ui-box-${Date.now() % 100000}`;
    await page.sidebar.openTab(SIDEBAR_ID);
    await expect(
      panel(page).locator('.jp-ComputeServers-status')
    ).toHaveAttribute('data-state', 'ok');

    // Create: a refusal from the server shows by its field and the dialog stays open.
    await panel(page).locator('.jp-ComputeServers-new').click();
    const dialog = page.locator('.jp-Dialog');
    await expect(dialog.locator('select[name="cloud"]')).toHaveValue('local');
    await dialog.locator('input[name="name"]').fill(name);
    await dialog.locator('input[name="cpu"]').fill('9999');
    await dialog.locator('.jp-ComputeServers-createButton').click();
    const cpuError = dialog.locator(
      '[data-field="cpu"] .jp-ComputeServers-fieldError'
    );
    await expect(cpuError).toContainText('config.cpu');
    await expect(dialog.locator('input[name="name"]')).toHaveValue(name);

    await dialog.locator('input[name="cpu"]').fill('1');
    await expect(cpuError).toHaveCount(0);
    await dialog.locator('.jp-ComputeServers-createButton').click();
    await expect(dialog).toHaveCount(0);

    await expect(row(page, name)).toBeVisible();
    await waitForState(page, name, 'deprovisioned');
    await expect(
      row(page, name).locator('.jp-ComputeServers-cloud')
    ).toHaveText('local');
    await expect(
      row(page, name).locator('.jp-ComputeServers-hardware')
    ).toContainText('1 CPU');
    expect(await actionButtons(page, name)).toEqual(['start', 'delete']);

    // Start.
    await row(page, name).locator('button[data-action="start"]').click();
    await waitForState(page, name, 'running');
    expect(await actionButtons(page, name)).toEqual([
      'stop',
      'reboot',
      'deprovision'
    ]);

    // Stop.
    await row(page, name).locator('button[data-action="stop"]').click();
    await waitForState(page, name, 'off');
    expect(await actionButtons(page, name)).toEqual(['start', 'deprovision']);

    // Deprovision: asks first, saying what will be lost.
    await row(page, name).locator('button[data-action="deprovision"]').click();
    await expect(dialog).toContainText(`Deprovision ${name}?`);
    await expect(dialog).toContainText('not synced back');
    await dialog.locator('.jp-ComputeServers-confirm').click();
    await waitForState(page, name, 'deprovisioned');
    expect(await actionButtons(page, name)).toEqual(['start', 'delete']);

    // Delete: asks too.
    await row(page, name).locator('button[data-action="delete"]').click();
    await expect(dialog).toContainText(`Delete ${name}?`);
    await dialog.locator('.jp-ComputeServers-confirm').click();
    await expect(row(page, name)).toHaveCount(0);
  });

  test('a cancelled deprovision changes nothing', async ({ page }) => {
    const name = `ui-keep-${Date.now() % 100000}`;
    const dialog = await openCreateDialog(page);
    await dialog.locator('input[name="name"]').fill(name);
    await dialog.locator('.jp-ComputeServers-createButton').click();
    await waitForState(page, name, 'deprovisioned');
    await row(page, name).locator('button[data-action="start"]').click();
    await waitForState(page, name, 'running');

    await row(page, name).locator('button[data-action="deprovision"]').click();
    await dialog.getByRole('button', { name: 'Cancel' }).click();
    await expect(dialog).toHaveCount(0);
    await page.waitForTimeout(500);
    await waitForState(page, name, 'running');

    // Clean up.
    await row(page, name).locator('button[data-action="deprovision"]').click();
    await dialog.locator('.jp-ComputeServers-confirm').click();
    await waitForState(page, name, 'deprovisioned');
    await row(page, name).locator('button[data-action="delete"]').click();
    await dialog.locator('.jp-ComputeServers-confirm').click();
    await expect(row(page, name)).toHaveCount(0);
  });

  test('the palette has New Compute Server', async ({ page }) => {
    expect(
      await page.evaluate(() =>
        window.jupyterapp.commands.label('compute-servers:create')
      )
    ).toBe('New Compute Server');

    await page.keyboard.press('Control+Shift+C');
    const palette = page.locator('#command-palette');
    await palette
      .locator('.lm-CommandPalette-input')
      .fill('New Compute Server');
    const item = palette.locator('.lm-CommandPalette-item', {
      hasText: 'New Compute Server'
    });
    await expect(item).toBeVisible();
    await item.click();

    const dialog = page.locator('.jp-Dialog');
    await expect(dialog).toContainText('New compute server');
    await dialog.getByRole('button', { name: 'Cancel' }).click();
    await expect(dialog).toHaveCount(0);
  });
});

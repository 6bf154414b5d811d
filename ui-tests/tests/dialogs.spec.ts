/**
 * The create and edit dialogs in the browser, on the local cloud (priced at $0.05 a vCPU-hour
 * and $0.73 a disk GB-month by jupyter_server_test_config.py, whose image catalogue has an
 * untested version of the machine's Python): image cards and the Advanced switch, the live
 * estimate following the CPUs, creating, then a spend limit set in the edit dialog.
 */
import { expect, test } from '@jupyterlab/galata';

import {
  removeTestServers,
  row,
  TRANSITION_TIMEOUT,
  waitForState,
  openCreateDialog
} from './helpers';

test.describe('Create and edit dialogs', () => {
  test.setTimeout(2 * TRANSITION_TIMEOUT);

  test.afterEach(async ({ page }) => {
    await removeTestServers(page);
  });

  test('pick an image, see the cost follow the CPUs, create; then set a spend limit', async ({
    page
  }) => {
    const name = `ui-priced-${Date.now() % 100000}`;
    const dialog = await openCreateDialog(page);

    // The image cards: the machine's own Python, chosen, tested versions only.
    const python = dialog.locator(
      '.jp-ComputeServers-imageCard[data-image-id="python"]'
    );
    await expect(python).toBeVisible();
    await expect(python).toHaveAttribute('aria-checked', 'true');
    await expect(python).toContainText('Python');
    await expect(python.locator('.jp-ComputeServers-gpuBadge')).toHaveText(
      'can use a GPU'
    );
    const versions = python.locator('select option');
    await expect(versions).toHaveText(['System Python']);

    // Advanced: untested versions too.
    await dialog.locator('input[name="advanced"]').check();
    await expect(versions).toHaveText([
      'System Python',
      'Python preview (ui-tests) (untested)'
    ]);
    await dialog.locator('input[name="advanced"]').uncheck();
    await expect(versions).toHaveText(['System Python']);

    // The estimate: 2 vCPUs at $0.05 and a 10 GB disk at $0.01 an hour, then 1 vCPU.
    const estimate = dialog.locator('.jp-ComputeServers-estimateSummary');
    await dialog.locator('input[name="cpu"]').fill('2');
    await expect(estimate).toHaveText(
      '$0.11/h running · $0.01/h off · ~$79.20 for 30 days'
    );
    await dialog.locator('input[name="cpu"]').fill('1');
    await expect(estimate).toHaveText(
      '$0.06/h running · $0.01/h off · ~$43.20 for 30 days'
    );
    await dialog.locator('input[name="hours_per_day"]').fill('8');
    await expect(estimate).toHaveText(
      '$0.06/h running · $0.01/h off · ~$19.20 for 30 days at 8 h/day'
    );

    await dialog.locator('input[name="name"]').fill(name);
    await dialog.locator('.jp-ComputeServers-createButton').click();
    await expect(dialog).toHaveCount(0);
    await waitForState(page, name, 'deprovisioned');
    await expect(
      row(page, name).locator('.jp-ComputeServers-hardware')
    ).toContainText('1 CPU');

    // Edit: a spend limit, saved and shown in the row.
    await row(page, name).locator('.jp-ComputeServers-editButton').click();
    await expect(dialog).toContainText(`Edit ${name}`);
    await expect(dialog.locator('input[name="cpu"]')).toHaveValue('1');
    await expect(estimate).toHaveText(
      '$0.06/h running · $0.01/h off · ~$43.20 for 30 days'
    );
    await dialog.locator('input[name="spend_amount"]').fill('25');
    await dialog.locator('input[name="spend_period_days"]').fill('7');
    await dialog.locator('.jp-ComputeServers-editSave').click();
    await expect(dialog).toHaveCount(0);
    await expect(
      row(page, name).locator('.jp-ComputeServers-spendLimit')
    ).toHaveText('limit $25.00 per 7 days');

    // Opened again, the dialog has it; a refusal shows by its field and keeps it open.
    await row(page, name).locator('.jp-ComputeServers-editButton').click();
    await expect(dialog.locator('input[name="spend_amount"]')).toHaveValue(
      '25'
    );
    await dialog.locator('input[name="daily_stop_time"]').fill('25:00');
    await dialog.locator('.jp-ComputeServers-editSave').click();
    await expect(
      dialog.locator(
        '[data-field="daily_stop_time"] .jp-ComputeServers-fieldError'
      )
    ).toContainText('HH:MM');
    await dialog.getByRole('button', { name: 'Cancel' }).click();
    await expect(dialog).toHaveCount(0);

    // Clean up.
    await row(page, name).locator('button[data-action="delete"]').click();
    await dialog.locator('.jp-ComputeServers-confirm').click();
    await expect(row(page, name)).toHaveCount(0);
  });
});

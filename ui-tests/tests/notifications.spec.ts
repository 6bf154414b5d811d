/**
 * Notifications for what happens to a compute server on its own, in the browser: a
 * preemption and a cost warning, sent as the server extension's events through Jupyter's
 * event bus (`POST /api/events`, as a cloud's watcher would emit them), shown once each as
 * JupyterLab notifications with their actions; "Start again" starts the server.
 */
import { expect, IJupyterLabPageFixture, test } from '@jupyterlab/galata';
import { Locator } from '@playwright/test';

import {
  createServer,
  removeTestServers,
  row,
  SIDEBAR_ID,
  TRANSITION_TIMEOUT,
  waitForState
} from './helpers';

const SCHEMA = 'https://events.jupyter.org/jupyter_compute_servers/server/v1';

async function emit(
  page: IJupyterLabPageFixture,
  data: Record<string, unknown>
): Promise<void> {
  const response = await page.request.post('/api/events', {
    data: { schema_id: SCHEMA, version: '1', data }
  });
  expect(response.status()).toBe(204);
}

/** The labels of a notification's action buttons (not its close button). */
async function actionLabels(toast: Locator): Promise<string[]> {
  await expect(toast).toBeVisible();
  return (await toast.getByRole('button').allTextContents()).filter(
    label => label.trim() !== ''
  );
}

test.describe('Compute server notifications', () => {
  test.setTimeout(4 * TRANSITION_TIMEOUT);

  test.afterEach(async ({ page }) => {
    await removeTestServers(page);
  });

  test('a preemption and a cost warning, once each, with their actions', async ({
    page
  }) => {
    const stamp = Date.now() % 100000;
    const name = `ui-notify-${stamp}`;
    await createServer(page, name);
    const serverId = Number(
      await row(page, name).getAttribute('data-server-id')
    );
    // Let the event socket settle before sending.
    await page.waitForTimeout(500);

    const reason = `Google Cloud preempted this spot VM (ui test ${stamp}).`;
    const preempted = {
      kind: 'preempted',
      server_id: serverId,
      state: 'off',
      state_reason: reason
    };
    await emit(page, preempted);
    await emit(page, preempted);
    const toast = page.locator('.Toastify__toast', { hasText: reason });
    await expect(toast).toHaveCount(1);
    // The same event heard twice is shown once.
    await page.waitForTimeout(500);
    await expect(toast).toHaveCount(1);
    await expect(toast).toContainText(`${name}: ${reason}`);
    expect(await actionLabels(toast)).toEqual(['Start again', 'Open panel']);

    // "Start again" starts it (from deprovisioned here: it never ran).
    await toast.getByRole('button', { name: 'Start again' }).click();
    await waitForState(page, name, 'running');

    // A spend limit's warning: its words, and "Edit limit" opens the edit dialog.
    const warning = `${name} has spent $20.00 of its spend limit of $25.00 per 7 days (80%); it stops when it reaches the limit.`;
    await emit(page, {
      kind: 'cost_warning',
      server_id: serverId,
      scope: 'spend_limit',
      threshold: 0.8,
      spent: 20,
      limit: 25,
      period_days: 7,
      message: warning
    });
    const costToast = page.locator('.Toastify__toast', { hasText: warning });
    await expect(costToast).toHaveCount(1);
    expect(await actionLabels(costToast)).toEqual(['Open panel', 'Edit limit']);
    await costToast.getByRole('button', { name: 'Edit limit' }).click();
    const dialog = page.locator('.jp-Dialog');
    await expect(dialog).toContainText(`Edit ${name}`);
    await dialog.getByRole('button', { name: 'Cancel' }).click();
    await expect(dialog).toHaveCount(0);

    // The monthly budget reached: an error, and "Open panel" shows the panel.
    const budget = `Compute servers have spent $500 of the monthly budget of $500 (100%) in 2030-01 (ui test ${stamp}).`;
    await emit(page, {
      kind: 'cost_warning',
      server_id: null,
      scope: 'budget',
      threshold: 1,
      spent: 500,
      limit: 500,
      month: '2030-01',
      message: budget
    });
    const budgetToast = page.locator('.Toastify__toast', { hasText: budget });
    await expect(budgetToast).toHaveCount(1);
    expect(await actionLabels(budgetToast)).toEqual(['Open panel']);
    await page.sidebar.openTab('filebrowser');
    await expect(page.locator(`#${SIDEBAR_ID}`)).toBeHidden();
    await budgetToast.getByRole('button', { name: 'Open panel' }).click();
    await expect(page.locator(`#${SIDEBAR_ID}`)).toBeVisible();
  });
});

/**
 * Metrics of a running local compute server in the sidebar: CPU and RAM bars that refresh
 * every few seconds while the panel shows, and no sampling at all while it is hidden.
 */
import { expect, test } from '@jupyterlab/galata';

import {
  createServer,
  removeTestServers,
  row,
  SIDEBAR_ID,
  TRANSITION_TIMEOUT,
  waitForState
} from './helpers';

test.describe('Compute server metrics', () => {
  test.setTimeout(4 * TRANSITION_TIMEOUT);

  test.afterEach(async ({ page }) => {
    await removeTestServers(page);
  });

  test('CPU and RAM bars of a running server, sampled only while shown', async ({
    page
  }) => {
    const name = `ui-metrics-${Date.now() % 100000}`;
    const samples: string[] = [];
    page.on('request', request => {
      if (
        /\/compute-servers\/api\/servers\/\d+\/metrics(\?|$)/.test(
          request.url()
        )
      ) {
        samples.push(request.url());
      }
    });

    await createServer(page, name);
    // Nothing to sample before it runs.
    expect(samples).toEqual([]);
    await row(page, name).locator('button[data-action="start"]').click();
    await waitForState(page, name, 'running');

    const metrics = row(page, name).locator('.jp-ComputeServers-metrics');
    const cpu = metrics.locator('[data-metric="cpu"]');
    const ram = metrics.locator('[data-metric="memory"]');
    await expect(cpu).toBeVisible({ timeout: TRANSITION_TIMEOUT });
    await expect(ram).toBeVisible();
    await expect(cpu.locator('.jp-ComputeServers-metricLabel')).toHaveText(
      'CPU'
    );
    await expect(cpu.locator('.jp-ComputeServers-metricValue')).toHaveText(
      /^\d+%$/
    );
    await expect(ram.locator('.jp-ComputeServers-metricValue')).toHaveText(
      /^[\d.]+ [GM]B \/ [\d.]+ [GM]B$/
    );
    await expect(ram.locator('[role="meter"]')).toHaveAttribute(
      'aria-valuenow',
      /^\d+$/
    );
    // No GPU here: no GPU bars, and the reason is in the tooltip.
    await expect(metrics.locator('[data-metric^="gpu-"]')).toHaveCount(0);
    await expect(metrics).toHaveAttribute('title', /^No GPU figures: /);

    // Sampled again every few seconds while shown.
    expect(samples.length).toBeGreaterThan(0);
    const first = await metrics.getAttribute('data-sampled');
    await expect
      .poll(async () => metrics.getAttribute('data-sampled'), {
        timeout: 20000
      })
      .not.toBe(first);

    // Hidden: no sampling at all.
    await page.sidebar.openTab('filebrowser');
    await expect(page.locator(`#${SIDEBAR_ID}`)).toBeHidden();
    await page.waitForTimeout(1500);
    const whileHidden = samples.length;
    await page.waitForTimeout(11000);
    expect(samples.length).toBe(whileHidden);

    // Shown again: sampled at once.
    await page.sidebar.openTab(SIDEBAR_ID);
    await expect
      .poll(() => samples.length, { timeout: 5000 })
      .toBeGreaterThan(whileHidden);
  });
});

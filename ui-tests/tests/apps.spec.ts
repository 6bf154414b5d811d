/**
 * A web app on a local compute server, in the browser: TensorBoard (from the server image's
 * apps) opened from the launcher card of the running server, its own UI drawn in a Lab tab
 * through the proxy; listed under the server with Stop, which ends it. The server is removed
 * at the end.
 */
import { expect, test } from '@jupyterlab/galata';

import {
  createServer,
  removeTestServers,
  row,
  SIDEBAR_ID,
  TRANSITION_TIMEOUT,
  waitForState,
  launcherSection
} from './helpers';

test.describe('Web apps on compute servers', () => {
  test.setTimeout(5 * TRANSITION_TIMEOUT);
  test.use({ viewport: { width: 1400, height: 850 } });

  test.afterEach(async ({ page }) => {
    await removeTestServers(page);
  });

  test('TensorBoard from the launcher, in a tab, stopped from the sidebar', async ({
    page
  }) => {
    const name = `ui-apps-${Date.now() % 100000}`;
    await createServer(page, name);
    await row(page, name).locator('button[data-action="start"]').click();
    await waitForState(page, name, 'running');

    // The running server's row offers the image's app.
    await expect(
      row(page, name).locator(
        'button.jp-ComputeServers-openApp[data-app="tensorboard"]'
      )
    ).toBeVisible();

    // Its launcher card starts it and opens it in a tab.
    const section = await launcherSection(page, name);
    const card = section.locator('.jp-LauncherCard', {
      hasText: `TensorBoard on ${name}`
    });
    await expect(card).toBeVisible({ timeout: TRANSITION_TIMEOUT });
    await card.click();

    const frame = page.frameLocator('.jp-ComputeServers-appTab iframe');
    // TensorBoard's own page (after the proxy's "Waiting for TensorBoard" page reloads).
    await expect(
      frame.locator('tf-tensorboard, tb-webapp').first()
    ).toBeAttached({
      timeout: TRANSITION_TIMEOUT
    });
    await expect(frame.locator('body')).toContainText('TensorBoard', {
      timeout: TRANSITION_TIMEOUT
    });

    // Listed under the server, and stopped from there.
    await page.sidebar.openTab(SIDEBAR_ID);
    const listed = row(page, name).locator(
      '.jp-ComputeServers-app[data-app="tensorboard"]'
    );
    await expect(listed).toBeVisible({ timeout: TRANSITION_TIMEOUT });
    await listed.locator('.jp-ComputeServers-appStop').click();
    await expect(listed).toHaveCount(0, { timeout: TRANSITION_TIMEOUT });
  });
});

import { expect, test } from '@jupyterlab/galata';

const SIDEBAR_ID = 'jp-compute-servers-sidebar';
const PLUGIN_IDS = [
  'jupyter-compute-servers:status',
  'jupyter-compute-servers:plugin'
];
// The version the frontend was built with, which the server extension must answer too.
const VERSION: string = require('../../package.json').version;

test.describe('Compute Servers sidebar', () => {
  test.describe('on load', () => {
    // Navigate by hand, so that console messages from the very start are seen.
    test.use({ autoGoto: false });

    test('JupyterLab loads the extension without errors', async ({ page }) => {
      const errors: string[] = [];
      page.on('console', message => {
        if (message.type() === 'error') {
          errors.push(message.text());
        }
      });
      page.on('pageerror', error => errors.push(error.message));

      await page.goto();

      for (const id of PLUGIN_IDS) {
        expect(
          await page.evaluate(
            pluginId => window.jupyterapp.isPluginActivated(pluginId),
            id
          ),
          `plugin ${id} activated`
        ).toBe(true);
      }
      // Let the status request and the sidebar settle before looking at the console.
      await page.sidebar.openTab(SIDEBAR_ID);
      await expect(
        page.locator(`#${SIDEBAR_ID} .jp-ComputeServers-status`)
      ).toHaveAttribute('data-state', 'ok');

      // JupyterLab itself logs no errors here either, so any error counts.
      expect(errors).toEqual([]);
    });
  });

  test('opens and shows the server extension status', async ({ page }) => {
    const tab = page.sidebar.getTabLocator(SIDEBAR_ID);
    await expect(tab).toBeVisible();
    await expect(tab).toHaveAttribute('title', 'Compute Servers');

    await page.sidebar.openTab(SIDEBAR_ID);
    expect(await page.sidebar.isTabOpen(SIDEBAR_ID)).toBe(true);
    expect(await page.sidebar.getTabPosition(SIDEBAR_ID)).toBe('left');

    const panel = page.locator(`#${SIDEBAR_ID}`);
    await expect(panel).toBeVisible();
    await expect(panel.locator('h2')).toHaveText('Compute Servers');
    const banner = panel.locator('.jp-ComputeServers-status');
    await expect(banner).toHaveAttribute('data-state', 'ok');
    await expect(banner).toContainText(`Server extension ${VERSION}`);
    await expect(banner).not.toHaveAttribute('role', 'alert');

    expect(await panel.screenshot()).toMatchSnapshot('sidebar-panel.png');
  });

  test('stays open across a reload', async ({ page }) => {
    // The layout restorer saves the workspace (debounced) after the layout changes.
    const saved = page.waitForRequest(request => {
      if (
        request.method() !== 'PUT' ||
        !/\/api\/workspaces\//.test(request.url())
      ) {
        return false;
      }
      const left = request.postDataJSON()?.data?.['layout-restorer:data']?.left;
      return left?.current === SIDEBAR_ID && !left?.collapsed;
    });
    await page.sidebar.openTab(SIDEBAR_ID);
    expect(await page.sidebar.isTabOpen(SIDEBAR_ID)).toBe(true);
    await saved;

    await page.reload();

    await expect
      .poll(() => page.sidebar.isTabOpen(SIDEBAR_ID), { timeout: 10000 })
      .toBe(true);
    await expect(page.locator(`#${SIDEBAR_ID}`)).toBeVisible();
    const banner = page.locator(
      `#${SIDEBAR_ID} .jp-ComputeServers-status[data-state="ok"]`
    );
    await expect(banner).toContainText(`Server extension ${VERSION}`);
  });

  test('is closed when another tab is chosen', async ({ page }) => {
    await page.sidebar.openTab(SIDEBAR_ID);
    await page.sidebar.openTab('filebrowser');
    expect(await page.sidebar.isTabOpen(SIDEBAR_ID)).toBe(false);
    await expect(page.locator(`#${SIDEBAR_ID}`)).toBeHidden();
  });
});

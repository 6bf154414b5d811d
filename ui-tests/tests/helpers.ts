/** Helpers shared by the browser tests (not a test file: Playwright runs `*.spec.ts`). */
import { expect, IJupyterLabPageFixture } from '@jupyterlab/galata';
import { Locator } from '@playwright/test';

export const SIDEBAR_ID = 'jp-compute-servers-sidebar';
// Starting a local server boots its own SSH server: allow for a slow machine.
export const TRANSITION_TIMEOUT = 60 * 1000;

export function panel(page: IJupyterLabPageFixture): Locator {
  return page.locator(`#${SIDEBAR_ID}`);
}

export function row(page: IJupyterLabPageFixture, name: string): Locator {
  return panel(page).locator(
    `.jp-ComputeServers-server[data-server-name="${name}"]`
  );
}

export async function waitForState(
  page: IJupyterLabPageFixture,
  name: string,
  state: string
): Promise<void> {
  await expect(
    row(page, name).locator('.jp-ComputeServers-badge')
  ).toHaveAttribute('data-state', state, { timeout: TRANSITION_TIMEOUT });
}

export async function actionButtons(
  page: IJupyterLabPageFixture,
  name: string
): Promise<string[]> {
  return row(page, name)
    .locator('button[data-action]')
    .evaluateAll(buttons =>
      buttons.map(b => (b as HTMLElement).dataset.action ?? '')
    );
}

/** Open the sidebar and its create dialog; answer the dialog. */
export async function openCreateDialog(
  page: IJupyterLabPageFixture
): Promise<Locator> {
  await page.sidebar.openTab(SIDEBAR_ID);
  await panel(page).locator('.jp-ComputeServers-new').click();
  return page.locator('.jp-Dialog');
}

/** Create a local compute server through the sidebar's dialog. */
export async function createServer(
  page: IJupyterLabPageFixture,
  name: string
): Promise<void> {
  const dialog = await openCreateDialog(page);
  await dialog.locator('input[name="name"]').fill(name);
  await dialog.locator('.jp-ComputeServers-createButton').click();
  await expect(dialog).toHaveCount(0);
  await waitForState(page, name, 'deprovisioned');
}

/**
 * Deprovision and delete what a test left behind (after a failure), through the REST API, so
 * that later tests (and the sidebar's screenshot) start from an empty list.
 */
export async function removeTestServers(
  page: IJupyterLabPageFixture
): Promise<void> {
  const api = '/compute-servers/api/servers';
  const deadline = Date.now() + TRANSITION_TIMEOUT;
  for (;;) {
    const servers = (
      (await (await page.request.get(api)).json()).servers as any[]
    ).filter(s => String(s.name).startsWith('ui-'));
    if (servers.length === 0) {
      return;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `Could not remove: ${servers.map(s => `${s.name} (${s.state})`)}`
      );
    }
    for (const server of servers) {
      // A server in the middle of a transition allows nothing: wait for it.
      if (server.allowed_actions.includes('delete')) {
        await page.request.delete(`${api}/${server.id}`);
      } else if (server.allowed_actions.includes('deprovision')) {
        await page.request.post(`${api}/${server.id}/actions/deprovision`, {
          data: { confirm: true }
        });
      }
    }
    await page.waitForTimeout(250);
  }
}

/** The launcher's section of a compute server (opening a launcher if none is open). */
export async function launcherSection(
  page: IJupyterLabPageFixture,
  name: string
): Promise<Locator> {
  if ((await page.locator('.jp-Launcher').count()) === 0) {
    await page.evaluate(() =>
      window.jupyterapp.commands.execute('launcher:create')
    );
  }
  return page.locator('.jp-Launcher-section', {
    has: page.locator('.jp-Launcher-sectionTitle', {
      hasText: `Compute server: ${name}`
    })
  });
}

/** Open a notebook on the compute server's kernel from its launcher card. */
export async function launchNotebook(
  page: IJupyterLabPageFixture,
  name: string,
  card = 'Python 3 (ipykernel) Notebook'
): Promise<void> {
  await (
    await launcherSection(page, name)
  )
    .locator('.jp-LauncherCard', { hasText: card })
    .first()
    .click({ timeout: TRANSITION_TIMEOUT });
  await expect(page.locator('.jp-NotebookPanel')).toBeVisible();
}

/**
 * File sync and costs in the sidebar, in the browser, on a local compute server: the row's
 * rates (the test server prices the local cloud by a rate card); a file created in the Jupyter
 * root, the Sync button, the summary ("1 sent"), and the file read on the server in a remote
 * terminal; a change on both sides, kept twice and linked; the Sync settings dialog with a
 * refusal shown by its field. The server is removed at the end.
 */
import { expect, IJupyterLabPageFixture, test } from '@jupyterlab/galata';

import {
  createServer,
  removeTestServers,
  row,
  TRANSITION_TIMEOUT,
  waitForState
} from './helpers';

const API = '/compute-servers/api';

/** The lines of a terminal's xterm.js buffer (it draws on a canvas). */
async function screenText(
  page: IJupyterLabPageFixture,
  title: string
): Promise<string> {
  return page.evaluate(label => {
    const shell = window.jupyterapp.shell as any;
    for (const widget of shell.widgets('main')) {
      if (widget.title.label === label) {
        const buffer = widget.content._term?.buffer.active;
        const lines: string[] = [];
        for (let i = 0; i < (buffer?.length ?? 0); i++) {
          lines.push(buffer.getLine(i)?.translateToString(true) ?? '');
        }
        return lines.join('\n');
      }
    }
    return '';
  }, title);
}

/** Type a command into the visible terminal and wait until `output` shows. */
async function run(
  page: IJupyterLabPageFixture,
  title: string,
  command: string,
  output: RegExp
): Promise<void> {
  await page
    .locator('.jp-ComputeServers-remoteTerminal:visible .xterm-screen')
    .click();
  await page.keyboard.type(command);
  await page.keyboard.press('Enter');
  await expect
    .poll(async () => output.test(await screenText(page, title)), {
      timeout: TRANSITION_TIMEOUT
    })
    .toBe(true);
}

test.describe('File sync and costs', () => {
  test.setTimeout(5 * TRANSITION_TIMEOUT);
  test.use({ viewport: { width: 1400, height: 900 } });

  test.afterEach(async ({ page }) => {
    await removeTestServers(page);
  });

  test('rates on the row; a file synced to the server ("1 sent"), a conflict, the settings', async ({
    page
  }) => {
    const stamp = Date.now() % 100000;
    const name = `ui-sync-${stamp}`;
    const file = `ui-sync-note-${stamp}.txt`;
    await createServer(page, name);
    const serverId = Number(
      await row(page, name).getAttribute('data-server-id')
    );

    // Its rates side by side (2 vCPUs at $0.05 an hour, 10 GB at $0.73 a month).
    await expect(
      row(page, name).locator('.jp-ComputeServers-rates')
    ).toHaveText('$0.11/h running · $0.01/h off');
    await expect(
      row(page, name).locator('.jp-ComputeServers-spent')
    ).toHaveText('spent $0 today · $0 this month');
    // Not running: only the settings can be chosen.
    await expect(
      row(page, name).locator('.jp-ComputeServers-syncButton')
    ).toBeDisabled();

    await row(page, name).locator('button[data-action="start"]').click();
    await waitForState(page, name, 'running');
    const syncButton = row(page, name).locator('.jp-ComputeServers-syncButton');
    await expect(syncButton).toBeEnabled();
    // The total line with all servers' rate.
    await expect(
      page.locator('.jp-ComputeServers-costsTotalLine')
    ).toContainText('All servers: $0.11/h now');

    // Whatever the root holds already, synced first.
    await syncButton.click();
    const sync = row(page, name).locator('.jp-ComputeServers-sync');
    await expect(sync).toHaveAttribute('data-state', 'completed', {
      timeout: TRANSITION_TIMEOUT
    });

    // A new file in the Jupyter root, then Sync: one file sent.
    expect(
      await page.contents.uploadContent(
        'hello from the Jupyter root\n',
        'text',
        file
      )
    ).toBe(true);
    await syncButton.click();
    const summary = sync.locator('.jp-ComputeServers-syncSummary');
    await expect(summary).toHaveText(
      '1 sent · 0 received · 0 deleted · 0 conflicts · 0 skipped',
      { timeout: TRANSITION_TIMEOUT }
    );
    await expect(sync.locator('.jp-ComputeServers-syncHeadline')).toHaveText(
      /^Synced at \d\d:\d\d$/
    );
    const syncs = await (
      await page.request.get(`${API}/servers/${serverId}/syncs`)
    ).json();
    expect(syncs.syncs[0].summary.changes).toEqual([
      { path: file, action: 'sent' }
    ]);

    // The file is on the server: read it in a terminal there.
    await row(page, name).locator('.jp-ComputeServers-newTerminal').click();
    const title = `Terminal 1 on ${name}`;
    await run(page, title, `cat ${file}`, /\nhello from the Jupyter root\s*\n/);

    // Changed on both sides: both kept, both linked.
    await run(
      page,
      title,
      `echo from the server > ${file}; echo written`,
      /\nwritten\s*\n/
    );
    const saved = await page.request.put(`/api/contents/${file}`, {
      data: {
        type: 'file',
        format: 'text',
        content: 'changed in the Jupyter root\n'
      }
    });
    expect(saved.status()).toBe(200);
    await syncButton.click();
    await expect(summary).toContainText('1 conflict', {
      timeout: TRANSITION_TIMEOUT
    });
    const links = sync.locator('.jp-ComputeServers-syncOpen');
    await expect(links).toHaveCount(2);
    await expect(links.nth(0)).toHaveText(file);
    const theirs = await links.nth(1).getAttribute('data-path');
    expect(theirs).toMatch(
      new RegExp(`^ui-sync-note-${stamp} \\(conflict ${name} .*\\)\\.txt$`)
    );

    await links.nth(1).click();
    await expect(
      page.locator('.lm-DockPanel-tabBar .lm-TabBar-tab', { hasText: theirs! })
    ).toBeVisible();
    expect(await page.contents.fileExists(theirs!)).toBe(true);

    // The sync settings: a refusal by its field, then saved.
    await row(page, name).locator('.jp-ComputeServers-syncMenuButton').click();
    const menu = row(page, name).locator('.jp-ComputeServers-syncMenu');
    await expect(menu.locator('[role="menuitem"]')).toHaveText([
      'Sync both ways',
      'Push to the server',
      'Pull from the server',
      'Sync settings…'
    ]);

    await menu.locator('[data-direction="settings"]').click();
    const dialog = page.locator('.jp-Dialog');
    await expect(dialog).toContainText(`Sync settings of ${name}`);
    await expect(dialog.locator('input[name="before_kernel"]')).toBeChecked();
    await dialog.locator('input[name="max_file_size_mb"]').fill('0');
    await dialog.locator('textarea[name="excludes"]').fill('*.csv\ndata/raw/');
    await dialog.locator('.jp-ComputeServers-syncSettingsSave').click();
    await expect(
      dialog.locator(
        '[data-field="max_file_size_mb"] .jp-ComputeServers-fieldError'
      )
    ).toContainText('sync.max_file_size_mb must be between 1 and');

    await dialog.locator('input[name="max_file_size_mb"]').fill('5');
    await dialog.locator('input[name="auto_sync"]').check();
    await dialog.locator('input[name="auto_sync_minutes"]').fill('10');
    await dialog.locator('.jp-ComputeServers-syncSettingsSave').click();
    await expect(dialog).toHaveCount(0);
    const server = await (
      await page.request.get(`${API}/servers/${serverId}`)
    ).json();
    expect(server.sync).toEqual({
      excludes: ['*.csv', 'data/raw/'],
      server_only: [],
      max_file_size_mb: 5,
      auto_sync_minutes: 10,
      before_kernel: true,
      pull_executable_config: [],
      max_delete_percent: 50
    });

    for (const path of [file, theirs!]) {
      await page.contents.deleteFile(path);
    }
  });
});

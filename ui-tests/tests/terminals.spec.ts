/**
 * A terminal on a local compute server, in the browser: opened from File > New > "Terminal on
 * Compute Server…", a shell in the server's workspace read off the screen, resized with the
 * panel, found again with its output after a reload, listed in the sidebar, and ended when its
 * tab closes. The server is removed at the end.
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

/** The tab of a compute server terminal, by its title. */
function tab(page: IJupyterLabPageFixture, title: string): Locator {
  return page.locator('.lm-DockPanel-tabBar .lm-TabBar-tab', {
    has: page.locator('.lm-TabBar-tabLabel', { hasText: title })
  });
}

/**
 * What the terminal shows: the lines of its xterm.js screen and scrollback. xterm.js draws on a
 * canvas, so the text is read from its buffer, which is what it draws.
 */
async function screenText(
  page: IJupyterLabPageFixture,
  title: string
): Promise<string> {
  return page.evaluate(label => {
    const shell = window.jupyterapp.shell as any;
    for (const widget of shell.widgets('main')) {
      if (widget.title.label === label) {
        const buffer = widget.content._term?.buffer.active;
        if (!buffer) {
          return '';
        }
        const lines: string[] = [];
        for (let i = 0; i < buffer.length; i++) {
          lines.push(buffer.getLine(i)?.translateToString(true) ?? '');
        }
        return lines.join('\n');
      }
    }
    return '';
  }, title);
}

/** Type a command into the terminal (focused by a click) and wait until its output shows. */
async function run(
  page: IJupyterLabPageFixture,
  title: string,
  command: string,
  output: RegExp
): Promise<RegExpMatchArray> {
  await page
    .locator('.jp-ComputeServers-remoteTerminal:visible .xterm-screen')
    .click();
  await page.keyboard.type(command);
  await page.keyboard.press('Enter');
  let found: RegExpMatchArray | null = null;
  await expect
    .poll(
      async () => {
        found = (await screenText(page, title)).match(output);
        return found !== null;
      },
      { timeout: TRANSITION_TIMEOUT }
    )
    .toBe(true);
  return found!;
}

test.describe('Terminals on compute servers', () => {
  test.setTimeout(5 * TRANSITION_TIMEOUT);
  test.use({ viewport: { width: 1400, height: 850 } });

  test.afterEach(async ({ page }) => {
    await removeTestServers(page);
  });

  test('a terminal from File > New: its shell, a resize, a reload, and closing it', async ({
    page
  }) => {
    const name = `ui-term-${Date.now() % 100000}`;
    await createServer(page, name);
    await row(page, name).locator('button[data-action="start"]').click();
    await waitForState(page, name, 'running');
    const serverId = await row(page, name).getAttribute('data-server-id');

    // File > New > Terminal on Compute Server…, then the server.
    await page.menu.clickMenuItem('File>New>Terminal on Compute Server…');
    const dialog = page.locator('.jp-Dialog');
    await expect(dialog).toContainText('Terminal on Compute Server');
    await dialog.locator('select[name="server"]').selectOption({ label: name });
    await expect(dialog).toContainText(`${name} is running.`);
    await dialog.locator('.jp-ComputeServers-pickAccept').click();
    await expect(dialog).toHaveCount(0);

    const title = `Terminal 1 on ${name}`;
    await expect(tab(page, title)).toBeVisible({ timeout: TRANSITION_TIMEOUT });
    await expect(
      page.locator('.jp-ComputeServers-remoteTerminal:visible .xterm-screen')
    ).toBeVisible();

    // The shell runs on the server, in its workspace.
    const pwd = await run(
      page,
      title,
      'hostname; pwd',
      /\n(\/\S*\/local\/(\d+)\/disk)\s*\n/
    );
    expect(pwd[2]).toBe(serverId);

    // Resizing the panel resizes the shell's terminal.
    const before = await run(page, title, 'stty size', /\n(\d+) (\d+)\s*\n/);
    await page.setViewportSize({ width: 1000, height: 600 });
    await expect
      .poll(
        async () => {
          const size = await run(
            page,
            title,
            'stty size',
            /\n(\d+) (\d+)\s*\n(?![\s\S]*\n\d+ \d+\s*\n)/
          );
          return `${size[1]} ${size[2]}`;
        },
        { timeout: TRANSITION_TIMEOUT }
      )
      .not.toBe(`${before[1]} ${before[2]}`);
    await page.setViewportSize({ width: 1400, height: 850 });

    // The sidebar lists it under the server.
    await page.sidebar.openTab(SIDEBAR_ID);
    const listed = row(page, name).locator(
      '.jp-ComputeServers-terminal[data-terminal-name="1"]'
    );
    await expect(listed).toBeVisible();

    // A reload finds it again, attached to the same shell, with what it showed.
    await run(page, title, 'echo "mark-$((40 + 2))"', /\nmark-42\s*\n/);
    // (The app is ready when the splash goes: there is no launcher to wait for, as galata would.)
    await page.reload({ waitForIsReady: false });
    await page.locator('#jupyterlab-splash').waitFor({ state: 'detached' });
    await expect(tab(page, title)).toBeVisible({ timeout: TRANSITION_TIMEOUT });
    await tab(page, title).click();
    await expect
      .poll(async () => screenText(page, title), {
        timeout: TRANSITION_TIMEOUT
      })
      .toMatch(/\nmark-42\s*\n/);
    // Still the same shell, and usable.
    await run(page, title, 'echo "again-$((1 + 1))"', /\nagain-2\s*\n/);

    // Closing the tab ends the shell.
    await tab(page, title).locator('.lm-TabBar-tabCloseIcon').click();
    await expect(tab(page, title)).toHaveCount(0);
    await expect
      .poll(
        async () =>
          (
            await (
              await page.request.get(
                `/compute-servers/api/servers/${serverId}/terminals`
              )
            ).json()
          ).terminals.length,
        { timeout: TRANSITION_TIMEOUT }
      )
      .toBe(0);
    await page.sidebar.openTab(SIDEBAR_ID);
    await expect(listed).toHaveCount(0, { timeout: TRANSITION_TIMEOUT });
    await expect(
      row(page, name).locator('.jp-ComputeServers-terminals')
    ).toContainText('No terminals');
  });

  test("a terminal from a server's row, and SSH access", async ({ page }) => {
    const name = `ui-row-${Date.now() % 100000}`;
    await createServer(page, name);
    await row(page, name).locator('button[data-action="start"]').click();
    await waitForState(page, name, 'running');

    await row(page, name).locator('button[data-tool="terminal"]').click();
    const title = `Terminal 1 on ${name}`;
    await expect(tab(page, title)).toBeVisible({ timeout: TRANSITION_TIMEOUT });
    await run(page, title, 'echo "row-$((5 * 5))"', /\nrow-25\s*\n/);

    await page.sidebar.openTab(SIDEBAR_ID);
    await row(page, name).locator('button[data-tool="ssh-access"]').click();
    const dialog = page.locator('.jp-Dialog');
    await expect(dialog).toContainText(`SSH access to ${name}`);
    await expect(
      dialog.locator('[data-snippet="config"] .jp-ComputeServers-snippetText')
    ).toContainText(`Host compute-${name}`);
    await expect(dialog.locator('[data-snippet="examples"]')).toContainText(
      `ssh compute-${name}`
    );
    await dialog.getByRole('button', { name: 'Close' }).click();
    await expect(dialog).toHaveCount(0);

    // Ending it from the sidebar closes its tab.
    await row(page, name)
      .locator(
        '.jp-ComputeServers-terminal[data-terminal-name="1"] .jp-ComputeServers-terminalEnd'
      )
      .click();
    await expect(tab(page, title)).toHaveCount(0, {
      timeout: TRANSITION_TIMEOUT
    });
    await waitForState(page, name, 'running');
  });
});

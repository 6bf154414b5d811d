import { consoleIcon, LabIcon, notebookIcon } from '@jupyterlab/ui-components';

import { safeColor, serverInitials } from './specs';

/** What a server badge shows: the server's colour and initials. */
export interface IBadgeServer {
  name: string;
  color: string;
}

function escapeXml(text: string): string {
  return text.replace(
    /[<>&"']/g,
    c =>
      ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&#39;' })[
        c
      ]!
  );
}

/**
 * The server's badge, drawn at (x, y) with side `size` in a 52-unit square: a rounded square
 * in the server's colour with its initials, as its kernel specs' logos show it.
 */
function badge(server: IBadgeServer, x: number, y: number, size: number) {
  const color = safeColor(server.color);
  const initials = escapeXml(serverInitials(server.name));
  const font = Math.round(size * 0.45);
  return (
    `<rect x="${x}" y="${y}" width="${size}" height="${size}" rx="${size / 5}" ` +
    `fill="${color}" stroke="#ffffff" stroke-width="${size / 14}"/>` +
    `<text x="${x + size / 2}" y="${y + size / 2}" dy="0.35em" font-family="sans-serif" ` +
    `font-size="${font}" font-weight="bold" fill="#ffffff" text-anchor="middle">${initials}</text>`
  );
}

/**
 * A launcher card's icon: JupyterLab's notebook or console icon with the server's badge in
 * its corner, so the cards say both what they open and where it runs.
 */
export function launcherCardSvg(
  kind: 'notebook' | 'console',
  server: IBadgeServer
): string {
  const base = (kind === 'notebook' ? notebookIcon : consoleIcon).svgstr;
  let inner = '';
  try {
    const doc = new DOMParser().parseFromString(base, 'image/svg+xml');
    const root = doc.documentElement;
    if (root.nodeName === 'svg') {
      root.setAttribute('x', '0');
      root.setAttribute('y', '0');
      root.setAttribute('width', '40');
      root.setAttribute('height', '40');
      inner = new XMLSerializer().serializeToString(root);
    }
  } catch {
    inner = '';
  }
  return (
    '<svg xmlns="http://www.w3.org/2000/svg" width="52" height="52" viewBox="0 0 52 52">' +
    inner +
    badge(server, 24, 24, 27) +
    '</svg>'
  );
}

/**
 * LabIcons made from SVG strings that change (a server renamed or recoloured): one icon per
 * key, its image replaced when the SVG changes, so that what shows it re-renders.
 */
export class IconCache {
  constructor(private readonly prefix: string) {}

  get(key: string, svgstr: string): LabIcon {
    let icon = this._icons.get(key);
    if (!icon) {
      icon = new LabIcon({ name: `${this.prefix}:${key}`, svgstr });
      this._icons.set(key, icon);
    } else if (icon.svgstr !== svgstr) {
      icon.svgstr = svgstr;
    }
    return icon;
  }

  private _icons = new Map<string, LabIcon>();
}

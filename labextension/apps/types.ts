/**
 * The shapes of a compute server's web apps (`compute-servers/api/servers/{id}/apps`) and open
 * ports (`.../ports`), from the types generated from openapi.json.
 */
import { components } from '../api/schema';

/** An app the server's image declares, with its state there. */
export type IServerApp = components['schemas']['ServerApp'];

/** A port a process of the server listens on (its loopback). */
export type IListeningPort = components['schemas']['ListeningPort'];

/** What the sidebar shows under a running server: its apps and its open ports. */
export interface IServerWebApps {
  apps: ReadonlyArray<IServerApp>;
  ports: ReadonlyArray<IListeningPort>;
}

/** An app as the image catalogue declares it. */
export type IImageApp = NonNullable<
  components['schemas']['Image']['apps']
>[number];

/** The apps a server's image declares: a server without an image runs the machine's own
 * Python, whose image is the catalogue's `python` runtime (as the server extension says). */
export function declaredApps(
  images: ReadonlyArray<components['schemas']['Image']>,
  image: string | null | undefined
): IImageApp[] {
  const found = image
    ? images.find(i => i.id === image)
    : images.find(i => i.runtime.kind === 'python');
  return [...(found?.apps ?? [])];
}

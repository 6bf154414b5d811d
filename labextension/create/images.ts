/**
 * Which images of the catalogue the create and edit dialogs offer, for a cloud and the
 * hardware chosen: only those the cloud accepts, built for its architecture, with a GPU
 * when they need one (choosing such an image adds one when the cloud has GPUs).
 */
import { IImageOffering } from '../servers/types';
import { IImage, IImageVersion, ImageGpu } from './types';

/** Whether a GPU is chosen, could be chosen on this cloud (or host), or cannot be at all. */
export type GpuAvailability = 'chosen' | 'possible' | 'impossible';

/** What decides which images are offered. */
export interface IImageContext {
  /**
   * The images the cloud accepts, with their tags (`offerings.images`, e.g. the local cloud's
   * runnable ones); undefined: the cloud does not say, every image of the catalogue may do.
   */
  offered?: ReadonlyArray<IImageOffering>;
  /** The machine's architecture (x86_64, arm64), when known. */
  arch: string | null;
  gpu: GpuAvailability;
}

/** An image as the picker offers it. */
export interface IImageChoice {
  image: IImage;
  /** The versions offered (those the cloud accepts). */
  versions: IImageVersion[];
  /** What choosing it changes, e.g. "Choosing it adds a GPU." ('' for nothing). */
  note: string;
}

export function imageGpu(image: IImage | undefined): ImageGpu {
  return image?.gpu ?? 'optional';
}

/** The GPU badge of an image: "needs a GPU", "can use a GPU", or '' (none). */
export function gpuBadge(image: IImage): string {
  switch (imageGpu(image)) {
    case 'required':
      return 'needs a GPU';
    case 'optional':
      return 'can use a GPU';
    default:
      return '';
  }
}

/**
 * The images to offer, in catalogue order (highest priority first): those the cloud accepts,
 * for its architecture, that need a GPU only where one can be had, each with at least one
 * version the cloud accepts.
 */
export function imageChoices(
  images: ReadonlyArray<IImage>,
  context: IImageContext
): IImageChoice[] {
  const choices: IImageChoice[] = [];
  for (const image of images) {
    let versions = image.versions;
    if (context.offered) {
      const offer = context.offered.find(o => o.id === image.id);
      if (!offer) {
        continue;
      }
      versions = versions.filter(v => offer.tags.includes(v.tag));
    }
    if (versions.length === 0) {
      continue;
    }
    if (
      context.arch &&
      image.arch &&
      image.arch.length > 0 &&
      !image.arch.includes(context.arch)
    ) {
      continue;
    }
    const gpu = imageGpu(image);
    let note = '';
    if (gpu === 'required') {
      if (context.gpu === 'impossible') {
        continue;
      }
      if (context.gpu === 'possible') {
        note = 'Choosing it adds a GPU.';
      }
    } else if (gpu === 'none' && context.gpu === 'chosen') {
      note = 'It cannot use a GPU: choosing it removes the GPU.';
    }
    choices.push({ image, versions, note });
  }
  return choices;
}

/**
 * The catalogue as a cloud's `offerings.images` describes it, for when the catalogue itself
 * could not be read: each tag a tested version named after itself.
 */
export function imagesFromOfferings(
  offered: ReadonlyArray<IImageOffering>
): IImage[] {
  return offered.map(o => ({
    id: o.id,
    label: o.label || o.id,
    // Not known from the offerings (nothing reads it).
    runtime: { kind: '' } as unknown as IImage['runtime'],
    versions: o.tags.map(tag => ({ tag, label: tag, tested: true }))
  }));
}

/** A version as the version select shows it: its label, and "(untested)" when it is. */
export function versionLabel(version: IImageVersion): string {
  const label = version.label || version.tag;
  return version.tested ? label : `${label} (untested)`;
}

/** An icon the card may show: only data: and https URLs, as the catalogue's schema allows. */
export function safeIcon(icon: string | undefined): string | null {
  return icon && /^(data:image\/|https:\/\/)/.test(icon) ? icon : null;
}

/**
 * The Confluent wire format: magic byte 0, the schema id as a 4-byte big-endian integer, then the
 * serialized payload (plain Avro binary for Avro). Every Kafka client with a schema registry
 * serializer reads and writes it.
 */

export const MAGIC_BYTE = 0;
export const HEADER_SIZE = 5;

/** Why a payload is not in the wire format, or undefined when its header is sound. */
export function wireProblem(bytes: Buffer): string | undefined {
  if (bytes.length < HEADER_SIZE) {
    return `it is ${bytes.length} byte${bytes.length === 1 ? '' : 's'} long, shorter than the 5-byte schema registry header`;
  }
  if (bytes[0] !== MAGIC_BYTE) {
    return `its first byte is ${bytes[0]}, not the schema registry magic byte 0 (it was not written by a schema registry serializer)`;
  }
  return undefined;
}

/** The schema id of a framed payload; check `wireProblem` first. */
export function schemaIdOf(bytes: Buffer): number {
  return bytes.readInt32BE(1);
}

/** Writes the 5-byte header at the start of `target`. */
export function writeHeader(target: Buffer, id: number): void {
  target[0] = MAGIC_BYTE;
  target.writeInt32BE(id, 1);
}

/** Benchmarks treesync against rsync and rclone; see the README. Placeholder until the engine issue. */
console.log("bench: not written yet");

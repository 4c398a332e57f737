#!/usr/bin/env node
import '../dist/mesh-harness.js';

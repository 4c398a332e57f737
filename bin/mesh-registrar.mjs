#!/usr/bin/env node
import '../dist/mesh-registrar.js';

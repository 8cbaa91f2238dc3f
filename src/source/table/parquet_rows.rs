//! Parquet rows, one row group at a time, as text fields.

use super::*;

/// Parquet rows, one row group at a time.
pub(super) struct ParquetRows {
    pub(super) reader: SerializedFileReader<std::fs::File>,
    pub(super) schema: SchemaDescPtr,
    pub(super) columns: Arc<[String]>,
    pub(super) next_group: usize,
    /// The rows of the current row group and how many of them are left.
    pub(super) rows: Option<(ReaderIter, u64)>,
    /// Rows yielded or skipped so far.
    pub(super) row: u64,
}

impl ParquetRows {
    pub(super) fn open(name: Arc<str>, file: std::fs::File) -> Result<Table, TableError> {
        let reader = SerializedFileReader::new(file).map_err(|source| TableError::Parquet {
            name: name.clone(),
            source,
        })?;
        // Checked up front: the reader would fail each row group alike.
        let mut chunks = reader
            .metadata()
            .row_groups()
            .iter()
            .flat_map(|g| g.columns());
        if let Some(codec) = chunks.find_map(|c| unsupported_codec(c.compression())) {
            return Err(TableError::ParquetCodec { name, codec });
        }
        let schema = reader.metadata().file_metadata().schema_descr_ptr();
        let columns: Arc<[String]> = schema
            .root_schema()
            .get_fields()
            .iter()
            .map(|f| f.name().to_string())
            .collect();
        Ok(Table {
            name,
            format: Format::Parquet,
            columns: Some(columns.clone()),
            header: None,
            kind: Kind::Parquet(Box::new(ParquetRows {
                reader,
                schema,
                columns,
                next_group: 0,
                rows: None,
                row: 0,
            })),
        })
    }

    pub(super) fn next_record(&mut self) -> Option<Record> {
        loop {
            if let Some((rows, left)) = &mut self.rows {
                match rows.next() {
                    Some(Ok(row)) => {
                        *left = left.saturating_sub(1);
                        self.row += 1;
                        let values = row.get_column_iter().map(|(_, f)| field_text(f)).collect();
                        return Some(Record {
                            line: self.row,
                            row: Ok(Arc::new(Row::Table {
                                columns: self.columns.clone(),
                                values,
                            })),
                            raw: None,
                        });
                    }
                    Some(Err(e)) => {
                        // The rest of this row group cannot be trusted; the
                        // next one is independent.
                        let skipped = left.saturating_sub(1);
                        let line = self.row + 1;
                        self.row += 1 + skipped;
                        self.rows = None;
                        return Some(Record {
                            line,
                            row: Err(format!(
                                "cannot read parquet row: {e} \
                                 (skipped the {skipped} rows after it in row group {})",
                                self.next_group - 1
                            )),
                            raw: None,
                        });
                    }
                    None => self.rows = None,
                }
            }
            let group = self.next_group;
            if group >= self.reader.num_row_groups() {
                return None;
            }
            self.next_group += 1;
            let count =
                u64::try_from(self.reader.metadata().row_group(group).num_rows()).unwrap_or(0);
            let rows = self
                .reader
                .get_row_group(group)
                .and_then(|g| TreeBuilder::new().as_iter(self.schema.clone(), &*g));
            match rows {
                Ok(rows) => self.rows = Some((rows, count)),
                Err(e) if count > 0 => {
                    let line = self.row + 1;
                    self.row += count;
                    return Some(Record {
                        line,
                        row: Err(format!(
                            "cannot read parquet row group {group}: {e} (skipped its {count} rows)"
                        )),
                        raw: None,
                    });
                }
                Err(_) => {}
            }
        }
    }
}

/// The name of a codec the `parquet` features in Cargo.toml leave out
/// (lzo: rare, and not built).
pub(super) fn unsupported_codec(codec: Compression) -> Option<&'static str> {
    match codec {
        Compression::UNCOMPRESSED
        | Compression::SNAPPY
        | Compression::GZIP(_)
        | Compression::LZ4
        | Compression::LZ4_RAW
        | Compression::ZSTD(_)
        | Compression::BROTLI(_) => None,
        Compression::LZO => Some("lzo"),
    }
}

pub(super) fn field_text(field: &Field) -> String {
    match field {
        Field::Null => String::new(),
        Field::Str(s) => s.clone(),
        Field::Bytes(b) => String::from_utf8_lossy(b.data()).into_owned(),
        Field::Bool(b) => b.to_string(),
        Field::Byte(n) => n.to_string(),
        Field::Short(n) => n.to_string(),
        Field::Int(n) => n.to_string(),
        Field::Long(n) => n.to_string(),
        Field::UByte(n) => n.to_string(),
        Field::UShort(n) => n.to_string(),
        Field::UInt(n) => n.to_string(),
        Field::ULong(n) => n.to_string(),
        Field::Float16(n) => n.to_string(),
        Field::Float(n) => n.to_string(),
        Field::Double(n) => n.to_string(),
        Field::Group(_) | Field::ListInternal(_) | Field::MapInternal(_) => {
            field_json(field).to_string()
        }
        // Decimals, dates, times and timestamps as parquet prints them.
        other => other.to_string(),
    }
}

pub(super) fn field_json(field: &Field) -> Value {
    pub(super) fn number(n: f64) -> Value {
        serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number)
    }
    match field {
        Field::Null => Value::Null,
        Field::Bool(b) => Value::Bool(*b),
        Field::Byte(n) => (*n).into(),
        Field::Short(n) => (*n).into(),
        Field::Int(n) => (*n).into(),
        Field::Long(n) => (*n).into(),
        Field::UByte(n) => (*n).into(),
        Field::UShort(n) => (*n).into(),
        Field::UInt(n) => (*n).into(),
        Field::ULong(n) => (*n).into(),
        Field::Float16(n) => number(f64::from(*n)),
        Field::Float(n) => number(f64::from(*n)),
        Field::Double(n) => number(*n),
        Field::Group(row) => Value::Object(
            row.get_column_iter()
                .map(|(name, f)| (name.clone(), field_json(f)))
                .collect(),
        ),
        Field::ListInternal(list) => Value::Array(list.elements().iter().map(field_json).collect()),
        Field::MapInternal(map) => Value::Object(
            map.entries()
                .iter()
                .map(|(k, v)| (field_text(k), field_json(v)))
                .collect(),
        ),
        other => Value::String(field_text(other)),
    }
}
